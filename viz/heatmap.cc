#include "viz/heatmap.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "viz/colorbar.h"
#include "viz/colormap.h"

namespace flowtape::viz {

absl::Status DensityHeatmapOptions::Validate() const {
  if (resolution < 1 || resolution > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        "density_heatmap: resolution = ", resolution, " must be in [1, 4096]"));
  if (!std::isfinite(log_range) || !(log_range > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        "density_heatmap: log_range = ", log_range, " must be finite and > 0"));
  return absl::OkStatus();
}

absl::StatusOr<Heatmap> DensityHeatmap(
    const std::function<Tensor(const Tensor&)>& log_prob, const Box& box,
    const DensityHeatmapOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  if (!std::isfinite(box.xmin) || !std::isfinite(box.xmax) ||
      !std::isfinite(box.ymin) || !std::isfinite(box.ymax) ||
      !(box.xmax > box.xmin && box.ymax > box.ymin))
    return absl::InvalidArgumentError(
        absl::StrCat("density_heatmap: empty or non-finite box [", box.xmin,
                     ", ", box.xmax, "] x [", box.ymin, ", ", box.ymax, "]"));
  const int n = options.resolution;
  Heatmap h;
  h.title = "model density";
  h.box = box;
  h.nx = h.ny = n;
  h.values.resize(static_cast<size_t>(n) * n);
  for (int row = 0; row < n; ++row) {
    NoGradScope no_grad;
    TapeScope scope;
    Tensor pts = Tensor::Zeros(Shape{n, 2});
    double* p = pts.mutable_data<double>();
    const double y = box.ymax - (row + 0.5) * (box.ymax - box.ymin) / n;
    for (int col = 0; col < n; ++col) {
      p[2 * col] = box.xmin + (col + 0.5) * (box.xmax - box.xmin) / n;
      p[2 * col + 1] = y;
    }
    Tensor lp = log_prob(pts);
    if (lp.numel() != n)
      return absl::InvalidArgumentError(
          absl::StrCat("density_heatmap: log_prob returned ",
                       lp.shape().ToString(), " for ", n, " points"));
    const std::vector<double> v = lp.ToVector();
    std::copy_n(v.begin(), n, h.values.begin() + static_cast<size_t>(row) * n);
  }
  if (options.log_scale) {
    double top = -INFINITY;
    for (double v : h.values)
      if (std::isfinite(v)) top = std::max(top, v);
    if (std::isfinite(top)) {
      h.vmax = top;
      h.vmin = top - options.log_range;
    }
    h.colorbar_label = "log p(x)";
  } else {
    for (double& v : h.values) v = std::exp(v);
    h.vmin = 0.0;
    h.colorbar_label = "p(x)";
  }
  return h;
}

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Heatmap& p) {
  if (p.nx <= 0 || p.ny <= 0 ||
      p.values.size() != static_cast<size_t>(p.nx) * p.ny)
    return absl::InvalidArgumentError(
        absl::StrCat("heat map: ", p.values.size(), " values for a ", p.nx, "x",
                     p.ny, " grid"));
  if (!(p.box.xmax > p.box.xmin && p.box.ymax > p.box.ymin))
    return absl::InvalidArgumentError(
        absl::StrCat("heat map: empty box [", p.box.xmin, ", ", p.box.xmax,
                     "] x [", p.box.ymin, ", ", p.box.ymax, "]"));
  double vmin = p.vmin, vmax = p.vmax;
  FT_RETURN_IF_ERROR(ColorRange(p.values, vmin, vmax));
  const Axis x = MakeAxis(p.box.xmin, p.box.xmax, p.xlabel);
  const Axis y = MakeAxis(p.box.ymin, p.box.ymax, p.ylabel);
  const double aspect =
      p.equal_aspect ? (p.box.ymax - p.box.ymin) / (p.box.xmax - p.box.xmin)
                     : 0.0;
  FT_ASSIGN_OR_RETURN(
      const Axes axes,
      LayoutAxes(canvas, cell, p.title, x, y,
                 ColorbarWidth(canvas, vmin, vmax, p.colorbar_label), aspect));
  canvas.DrawImage(Colorize(p.nx, p.ny, p.values, vmin, vmax), axes.area,
                   /*smooth=*/true);
  DrawAxes(canvas, axes, p.title);
  DrawColorbar(canvas, axes.area, vmin, vmax, p.colorbar_label);
  return axes;
}

}  // namespace flowtape::viz
