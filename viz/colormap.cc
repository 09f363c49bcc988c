#include "viz/colormap.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::viz {

Color Viridis(double t) {
  static const Color kStops[9] = {
      {0.267, 0.005, 0.329}, {0.279, 0.175, 0.483}, {0.230, 0.322, 0.546},
      {0.173, 0.449, 0.558}, {0.128, 0.567, 0.551}, {0.153, 0.680, 0.506},
      {0.361, 0.786, 0.388}, {0.666, 0.862, 0.196}, {0.993, 0.906, 0.144}};
  t = std::clamp(std::isnan(t) ? 0.0 : t, 0.0, 1.0) * 8.0;
  const int i = std::min(static_cast<int>(t), 7);
  const double f = t - i;
  const Color &a = kStops[i], &b = kStops[i + 1];
  return {a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

Color SeriesColor(int i) {
  static const Color kTab10[10] = {
      {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
      {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
      {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133},
      {0.090, 0.745, 0.812}};
  return kTab10[((i % 10) + 10) % 10];
}

Rgb ToRgb(const Color& c) {
  auto byte = [](double v) {
    return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0));
  };
  return {byte(c.r), byte(c.g), byte(c.b)};
}

Image Colorize(int nx, int ny, const std::vector<double>& values, double vmin,
               double vmax) {
  FT_CHECK(nx > 0 && ny > 0 && values.size() == static_cast<size_t>(nx) * ny,
           "colorize: ", values.size(), " values for ", nx, "x", ny);
  FT_CHECK(vmax > vmin, "colorize: empty range [", vmin, ", ", vmax, "]");
  Image image(nx, ny);
  for (int row = 0; row < ny; ++row)
    for (int col = 0; col < nx; ++col) {
      const double v = values[static_cast<size_t>(row) * nx + col];
      if (std::isnan(v)) continue;  // stays white
      image.set(col, row, ToRgb(Viridis((v - vmin) / (vmax - vmin))));
    }
  return image;
}

absl::Status ColorRange(const std::vector<double>& values, double& vmin,
                        double& vmax) {
  if (std::isnan(vmin) || std::isnan(vmax)) {
    double lo = INFINITY, hi = -INFINITY;
    for (double v : values)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    if (!(lo <= hi))
      return absl::InvalidArgumentError(absl::StrCat(
          "colour scale: none of the ", values.size(), " values is finite"));
    if (std::isnan(vmin)) vmin = lo;
    if (std::isnan(vmax)) vmax = hi;
    if (vmin == vmax) {
      const double d = vmin != 0 ? 0.1 * std::abs(vmin) : 0.5;
      vmin -= d;
      vmax += d;
    }
  }
  if (!(vmin < vmax) || !std::isfinite(vmax - vmin))
    return absl::InvalidArgumentError(
        absl::StrCat("colour scale: empty range [", vmin, ", ", vmax, "]"));
  return absl::OkStatus();
}

}  // namespace flowtape::viz
