#include "viz/plots.h"

#include <algorithm>
#include <cmath>

#include "autodiff/check.h"
#include "autodiff/tape.h"

namespace flowtape::viz {
namespace {

uint8_t ToByte(double v) {
  return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
}

Rgb Blend(Rgb under, Rgb over, double alpha) {
  return {ToByte(under.r + alpha * (over.r - under.r)),
          ToByte(under.g + alpha * (over.g - under.g)),
          ToByte(under.b + alpha * (over.b - under.b))};
}

}  // namespace

const Rgb kSeriesColors[4] = {
    {31, 119, 180}, {214, 39, 40}, {44, 160, 44}, {148, 103, 189}};

Rgb Viridis(double t) {
  // Samples of matplotlib's viridis at t = 0, 0.125, ..., 1.
  static const Rgb kStops[9] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 8.0;
  int i = std::min(static_cast<int>(t), 7);
  return Blend(kStops[i], kStops[i + 1], t - i);
}

Image DensityHeatmap(const std::function<Tensor(const Tensor&)>& log_prob,
                     const Box& box, int resolution) {
  NoGradScope no_grad;
  const int n = resolution;
  std::vector<double> logp(static_cast<size_t>(n) * n);
  for (int row = 0; row < n; ++row) {  // one image row per call
    Tensor pts = Tensor::Empty(Shape{n, 2});
    double* p = pts.mutable_data();
    const double y = box.ymax - (row + 0.5) * (box.ymax - box.ymin) / n;
    for (int col = 0; col < n; ++col) {
      p[2 * col] = box.xmin + (col + 0.5) * (box.xmax - box.xmin) / n;
      p[2 * col + 1] = y;
    }
    Tensor lp = log_prob(pts);
    FT_CHECK(lp.numel() == n, "density_heatmap: log_prob returned ",
             lp.shape().ToString(), " for ", n, " points");
    std::copy_n(lp.data(), n, logp.begin() + static_cast<size_t>(row) * n);
  }
  double top = -INFINITY;
  for (double v : logp)
    if (std::isfinite(v)) top = std::max(top, v);
  Image image(n, n);
  for (int row = 0; row < n; ++row)
    for (int col = 0; col < n; ++col)
      image.set(col, row, Viridis(std::exp(logp[row * n + col] - top)));
  return image;
}

Image ScatterPlot(const Tensor& points, const Box& box, int resolution, Rgb ink,
                  double alpha) {
  FT_CHECK(points.rank() == 2 && points.dim(1) == 2, "scatter_plot: points ",
           points.shape().ToString(), " (want [N, 2])");
  Image image(resolution, resolution);
  for (int64_t i = 0; i < points.dim(0); ++i) {
    const double x = points[2 * i], y = points[2 * i + 1];
    const double fx = (x - box.xmin) / (box.xmax - box.xmin) * resolution;
    const double fy = (box.ymax - y) / (box.ymax - box.ymin) * resolution;
    // Points outside the box, inf and NaN fail here, before any int cast.
    if (!(fx >= 0 && fx < resolution && fy >= 0 && fy < resolution)) continue;
    const int col = static_cast<int>(fx), row = static_cast<int>(fy);
    image.set(col, row, Blend(image.at(col, row), ink, alpha));
  }
  return image;
}

Image ImageGrid(const Tensor& images, int cols, int pad, int scale) {
  FT_CHECK(images.rank() == 4 && (images.dim(1) == 1 || images.dim(1) == 3),
           "image_grid: images ", images.shape().ToString(),
           " (want [N, 1 or 3, H, W])");
  const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2),
                w = images.dim(3);
  cols = static_cast<int>(std::min<int64_t>(cols, n));
  const int rows = static_cast<int>((n + cols - 1) / cols);
  const int cell_w = static_cast<int>(w) * scale + pad,
            cell_h = static_cast<int>(h) * scale + pad;
  Image out(cols * cell_w + pad, rows * cell_h + pad);
  const double* d = images.data();
  for (int64_t k = 0; k < n; ++k) {
    const int x0 = pad + static_cast<int>(k % cols) * cell_w;
    const int y0 = pad + static_cast<int>(k / cols) * cell_h;
    for (int64_t y = 0; y < h * scale; ++y)
      for (int64_t x = 0; x < w * scale; ++x) {
        auto v = [&](int64_t ch) {
          return ToByte(
              255.0 *
              std::clamp(d[((k * c + ch) * h + y / scale) * w + x / scale], 0.0,
                         1.0));
        };
        uint8_t g = v(0);
        out.set(x0 + x, y0 + y, c == 1 ? Rgb{g, g, g} : Rgb{g, v(1), v(2)});
      }
  }
  return out;
}

Image Histogram(const std::vector<std::vector<double>>& series, int bins,
                int width, int height, double lo, double hi) {
  if (std::isnan(lo) || std::isnan(hi)) {
    lo = INFINITY, hi = -INFINITY;
    for (const auto& s : series)
      for (double v : s)
        if (std::isfinite(v)) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
  }
  Image image(width, height);
  if (!(hi > lo) || !std::isfinite(hi - lo)) return image;
  std::vector<std::vector<double>> freq(series.size(),
                                        std::vector<double>(bins, 0.0));
  double peak = 0.0;
  for (size_t s = 0; s < series.size(); ++s) {
    for (double v : series[s]) {
      if (!std::isfinite(v)) continue;
      if (v < lo || v > hi) continue;
      int b = std::min(bins - 1, static_cast<int>((v - lo) / (hi - lo) * bins));
      freq[s][b] += 1.0 / series[s].size();
    }
    for (double f : freq[s]) peak = std::max(peak, f);
  }
  const int base = height - 10;
  for (size_t s = 0; peak > 0 && s < series.size(); ++s)
    for (int b = 0; b < bins; ++b) {
      const int x0 = 10 + b * (width - 20) / bins;
      const int x1 = 10 + (b + 1) * (width - 20) / bins;
      const int top = base - static_cast<int>(freq[s][b] / peak * (base - 10));
      for (int x = x0; x < x1; ++x)
        for (int y = top; y < base; ++y)
          image.set(x, y, Blend(image.at(x, y), kSeriesColors[s % 4], 0.5));
    }
  for (int x = 10; x < width - 10; ++x) image.set(x, base, {0, 0, 0});
  // Integer ticks, counted (t += 1 stalls beyond 2^53); none when there are
  // more integers than pixels.
  const double first = std::ceil(lo), ticks = std::floor(hi) - first + 1;
  for (int k = 0; ticks <= width && k < ticks; ++k) {
    const double t = first + k;
    const int x = 10 + static_cast<int>((t - lo) / (hi - lo) * (width - 20));
    const int len = std::fmod(std::abs(t), 5.0) == 0.0 ? 8 : 4;
    for (int y = base; y <= base + len; ++y) image.set(x, y, {0, 0, 0});
  }
  return image;
}

}  // namespace flowtape::viz
