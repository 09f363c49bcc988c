// Scatter plot: one or more point sets in the plane, each a colour (tab10 by
// series index unless given), drawn as translucent dots so that dense regions
// show darker; a legend names the labelled series.
//
//   points: [N, 2] tensor of (x, y) rows; rows with a NaN or infinite
//     coordinate are skipped, points outside the box are clipped.
//   box: the plotted range (default: all finite points, padded by 5%).
//   equal_aspect: one data unit is as long on both axes.
//
// Errors: InvalidArgument for points that are not [N, 2], an empty box, or a
// cell too small to plot in.
#ifndef FLOWTAPE_VIZ_SCATTER_H_
#define FLOWTAPE_VIZ_SCATTER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/colormap.h"

namespace flowtape::viz {

struct ScatterSeries {
  std::string label{};  // empty: not in the legend
  Tensor points{};
  std::optional<Color> color{};
  double radius = 1.5;  // pixels
  double alpha = 0.5;
};

struct Scatter {
  std::string title{};
  std::string xlabel = "x\u2081", ylabel = "x\u2082";  // x1, x2
  std::vector<ScatterSeries> series{};
  std::optional<Box> box{};
  bool equal_aspect = true;
};

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Scatter& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_SCATTER_H_
