// Histogram: several samples binned on one shared range and drawn over each
// other as translucent bars with a solid outline, each in its colour (tab10
// by series index unless given), normalised as densities so that samples of
// different sizes compare: bar height = (count in bin) / (n * bin width),
// with n the series' values inside the range. A legend names the labelled
// series.
//
//   range [lo, hi]: NaN ends default to the finite min / max of all series
//     (a single value v gives [v - 0.5, v + 0.5]); values outside the range,
//     NaN and inf are left out. The last bin is closed: hi falls in it.
//
// Errors: InvalidArgument for bins < 1, an empty or infinite range, or a cell
// too small to plot in.
#ifndef FLOWTAPE_VIZ_HISTOGRAM_H_
#define FLOWTAPE_VIZ_HISTOGRAM_H_

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/colormap.h"

namespace flowtape::viz {

struct HistogramSeries {
  std::string label{};  // empty: not in the legend
  std::vector<double> values{};
  std::optional<Color> color{};
};

struct Histogram {
  std::string title{}, xlabel{}, ylabel = "density";
  std::vector<HistogramSeries> series{};
  int bins = 50;
  double lo = NAN, hi = NAN;
};

// The bar heights of one series (densities as above); empty when no value is
// in the range.
std::vector<double> HistogramDensity(const std::vector<double>& values,
                                     int bins, double lo, double hi);

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Histogram& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_HISTOGRAM_H_
