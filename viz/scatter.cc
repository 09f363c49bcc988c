#include "viz/scatter.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "viz/legend.h"

namespace flowtape::viz {

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Scatter& p) {
  std::vector<double> xs, ys;
  for (size_t s = 0; s < p.series.size(); ++s) {
    const Tensor& t = p.series[s].points;
    if (!t.defined() || t.rank() != 2 || t.dim(1) != 2)
      return absl::InvalidArgumentError(absl::StrCat(
          "scatter: series ", s, " points ",
          t.defined() ? t.shape().ToString() : "undefined", " (want [N, 2])"));
    for (int64_t i = 0; i < t.dim(0); ++i) {
      xs.push_back(t.data<double>()[2 * i]);
      ys.push_back(t.data<double>()[2 * i + 1]);
    }
  }
  Box box;
  if (p.box) {
    box = *p.box;
  } else {
    box = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    IncludeInRange(xs, box.xmin, box.xmax);
    IncludeInRange(ys, box.ymin, box.ymax);
    PadRange(box.xmin, box.xmax, 0.05);
    PadRange(box.ymin, box.ymax, 0.05);
  }
  if (!(box.xmax > box.xmin && box.ymax > box.ymin))
    return absl::InvalidArgumentError(
        absl::StrCat("scatter: empty box [", box.xmin, ", ", box.xmax, "] x [",
                     box.ymin, ", ", box.ymax, "]"));
  const Axis x = MakeAxis(box.xmin, box.xmax, p.xlabel);
  const Axis y = MakeAxis(box.ymin, box.ymax, p.ylabel);
  const double aspect =
      p.equal_aspect ? (box.ymax - box.ymin) / (box.xmax - box.xmin) : 0.0;
  FT_ASSIGN_OR_RETURN(const Axes axes,
                      LayoutAxes(canvas, cell, p.title, x, y, 0.0, aspect));
  cairo_t* cr = canvas.cr();
  const Rect& a = axes.area;
  cairo_save(cr);
  cairo_rectangle(cr, a.x, a.y, a.w, a.h);
  cairo_clip(cr);
  std::vector<LegendEntry> legend;
  for (size_t s = 0; s < p.series.size(); ++s) {
    const ScatterSeries& series = p.series[s];
    const Color color = series.color.value_or(SeriesColor(s));
    canvas.SetColor(color, series.alpha);
    const double* d = series.points.data<double>();
    for (int64_t i = 0; i < series.points.dim(0); ++i) {
      if (!std::isfinite(d[2 * i]) || !std::isfinite(d[2 * i + 1])) continue;
      const double px = axes.PixelX(d[2 * i]), py = axes.PixelY(d[2 * i + 1]);
      if (px < a.x - 5 || px > a.right() + 5 || py < a.y - 5 ||
          py > a.bottom() + 5)
        continue;
      cairo_arc(cr, px, py, series.radius, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    legend.push_back({series.label, color, LegendMark::kDot});
  }
  cairo_restore(cr);
  DrawAxes(canvas, axes, p.title);
  DrawLegend(canvas, a, legend);
  return axes;
}

}  // namespace flowtape::viz
