// Colours for figures: the viridis colour map for scalar values, a
// qualitative palette for series, and value grids turned into images.
//
//   Viridis(t): matplotlib's viridis, piecewise linear through its samples at
//     t = 0, 1/8, ..., 1 (dark purple = 0, yellow = 1); t is clamped to
//     [0, 1] and NaN maps to 0.
//   SeriesColor(i): matplotlib's "tab10" palette (blue, orange, green, red,
//     purple, ...), cycling with period 10.
//   Colorize(nx, ny, values, vmin, vmax): an nx x ny image whose pixel
//     (col, row) is Viridis((values[row * nx + col] - vmin) / (vmax - vmin));
//     values below vmin (including -inf) take the colour of vmin, above vmax
//     that of vmax, and NaN is white.
//   ColorRange(values, vmin, vmax): fills a NaN vmin / vmax with the finite
//     minimum / maximum of values; a single value v widens to
//     v -+ 0.1 |v| (or -+ 0.5 for v = 0). InvalidArgument when no value is
//     finite (and a limit was asked for) or the range ends up empty.
#ifndef FLOWTAPE_VIZ_COLORMAP_H_
#define FLOWTAPE_VIZ_COLORMAP_H_

#include <vector>

#include "absl/status/status.h"
#include "viz/png.h"

namespace flowtape::viz {

// Components in [0, 1].
struct Color {
  double r = 0, g = 0, b = 0;
};

Color Viridis(double t);
Color SeriesColor(int i);
Rgb ToRgb(const Color& c);

// FT_CHECKs values.size() == nx * ny and vmax > vmin.
Image Colorize(int nx, int ny, const std::vector<double>& values, double vmin,
               double vmax);
absl::Status ColorRange(const std::vector<double>& values, double& vmin,
                        double& vmax);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_COLORMAP_H_
