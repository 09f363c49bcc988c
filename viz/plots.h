// Pictures of flows: 2-D density heat maps, sample scatter plots, image
// grids and overlaid histograms, as viz::Image (write with WritePng).
//
// Coordinates: a Box [xmin, xmax] x [ymin, ymax] maps to the image with x to
// the right and y upwards (row 0 is ymax).
//   DensityHeatmap: p = exp(log_prob) at the pixel centres, shown as p / max p
//     through the viridis colour map (dark = 0, yellow = max).
//   ScatterPlot: each point darkens its pixel multiplicatively (alpha
//     blending), so dense regions show as darker ink.
//   ImageGrid: [N, C, H, W] with values in [0, 1] (clamped), C = 1 grey or
//     C = 3 RGB, `cols` per row, `pad` pixels between, `scale` x upsampling.
//   Histogram: several samples binned on a shared range [lo, hi] (default:
//     min and max of all finite values), drawn as translucent overlaid bars
//     (colours from kSeriesColors) over a black baseline with a tick at
//     every integer value (long ticks at multiples of 5; no ticks when there
//     are more integers than pixels, and an empty plot for an infinite or
//     empty range).
//   Points and values that are NaN, infinite or outside the range are
//   skipped.
#ifndef FLOWTAPE_VIZ_PLOTS_H_
#define FLOWTAPE_VIZ_PLOTS_H_

#include <cmath>
#include <functional>
#include <vector>

#include "autodiff/tensor.h"
#include "viz/png.h"

namespace flowtape::viz {

struct Box {
  double xmin = -4, xmax = 4, ymin = -4, ymax = 4;
};

// Viridis colour for t in [0, 1] (clamped).
Rgb Viridis(double t);
extern const Rgb kSeriesColors[4];

// log_prob maps [M, 2] points to [M] log densities (evaluated without
// recording, in chunks).
Image DensityHeatmap(const std::function<Tensor(const Tensor&)>& log_prob,
                     const Box& box, int resolution = 256);
Image ScatterPlot(const Tensor& points, const Box& box, int resolution = 256,
                  Rgb ink = {31, 119, 180}, double alpha = 0.4);
Image ImageGrid(const Tensor& images, int cols, int pad = 2, int scale = 1);
Image Histogram(const std::vector<std::vector<double>>& series, int bins = 60,
                int width = 480, int height = 240, double lo = NAN,
                double hi = NAN);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_PLOTS_H_
