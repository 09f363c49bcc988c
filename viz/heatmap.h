// Heat map: values on a regular grid over a data box, drawn through the
// viridis colour map, with axes and a colour bar giving the scale.
//
//   values[row * nx + col] is the value at the centre of grid cell (col, row):
//     x = xmin + (col + 0.5) (xmax - xmin) / nx,
//     y = ymax - (row + 0.5) (ymax - ymin) / ny   (row 0 at the top).
//   Colour scale [vmin, vmax] (NaN: the finite min / max of the values, see
//   ColorRange); values outside it take the end colours, NaN is white.
//   equal_aspect: one data unit is as long on both axes.
//
// DensityHeatmap evaluates a 2-D model on the grid: log_prob maps [M, 2]
// points to [M] log densities (called once per grid row, without recording);
// the map shows p(x) = exp(log p(x)) (colour bar "p(x)"), or with log_scale
// log p(x) over the log_range nats below its maximum (colour bar
// "log p(x)").
//
// Errors: InvalidArgument for values.size() != nx * ny, a grid or box that is
// empty, no finite value, or a cell too small to plot in. DensityHeatmap:
// InvalidArgument for options that fail Validate(), an empty or non-finite
// box, or a log_prob that does not return one value per point.
#ifndef FLOWTAPE_VIZ_HEATMAP_H_
#define FLOWTAPE_VIZ_HEATMAP_H_

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "viz/axes.h"
#include "viz/canvas.h"

namespace flowtape::viz {

struct Heatmap {
  std::string title{};
  std::string xlabel = "x\u2081", ylabel = "x\u2082";  // x1, x2
  Box box{};
  int nx = 0, ny = 0;
  std::vector<double> values{};
  std::string colorbar_label{};
  double vmin = NAN, vmax = NAN;
  bool equal_aspect = true;
};

struct DensityHeatmapOptions {
  int resolution = 200;  // grid cells per side
  bool log_scale = false;
  double log_range = 10.0;  // nats shown below the maximum (log_scale)
  // InvalidArgument unless 1 <= resolution <= 4096 and log_range is finite
  // and > 0.
  absl::Status Validate() const;
};

absl::StatusOr<Heatmap> DensityHeatmap(
    const std::function<Tensor(const Tensor&)>& log_prob, const Box& box,
    const DensityHeatmapOptions& options = {});

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Heatmap& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_HEATMAP_H_
