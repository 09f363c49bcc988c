// Line plot: one or more series y(x), each a polyline in its colour (tab10
// by series index unless given), optionally dashed or with a dot at every
// point; a legend names the labelled series. Light grid lines at the y ticks.
//
//   x[i], y[i]: the i-th point; a NaN or infinite coordinate breaks the line.
//   log_y: log10 y axis (every finite y must be > 0).
//   box: the plotted range (default: x from the smallest to the largest
//     finite x; y over the finite values padded by 5%, on a log axis by 5% of
//     the decades).
//
// Errors: InvalidArgument for x and y of different lengths, y <= 0 on a log
// axis, an empty box, or a cell too small to plot in.
#ifndef FLOWTAPE_VIZ_LINES_H_
#define FLOWTAPE_VIZ_LINES_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/colormap.h"

namespace flowtape::viz {

struct LineSeries {
  std::string label{};  // empty: not in the legend
  std::vector<double> x{}, y{};
  std::optional<Color> color{};
  double width = 1.8;  // pixels
  double alpha = 1.0;
  bool dashed = false;
  bool markers = false;
};

struct Lines {
  std::string title{}, xlabel{}, ylabel{};
  std::vector<LineSeries> series{};
  bool log_y = false;
  std::optional<Box> box{};
};

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Lines& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_LINES_H_
