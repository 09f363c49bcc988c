#include "viz/lines.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "viz/legend.h"

namespace flowtape::viz {

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const Lines& p) {
  Box box{INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (size_t s = 0; s < p.series.size(); ++s) {
    const LineSeries& l = p.series[s];
    if (l.x.size() != l.y.size())
      return absl::InvalidArgumentError(
          absl::StrCat("lines: series ", s, " has ", l.x.size(), " x and ",
                       l.y.size(), " y values"));
    for (double v : l.y)
      if (p.log_y && std::isfinite(v) && v <= 0)
        return absl::InvalidArgumentError(
            absl::StrCat("lines: series ", s, " has y = ", v,
                         " on a log axis (needs y > 0)"));
    IncludeInRange(l.x, box.xmin, box.xmax);
    if (p.log_y) {
      std::vector<double> logs;
      for (double v : l.y) logs.push_back(std::log10(v));
      IncludeInRange(logs, box.ymin, box.ymax);
    } else {
      IncludeInRange(l.y, box.ymin, box.ymax);
    }
  }
  if (p.box) {
    box = *p.box;
  } else {
    PadRange(box.xmin, box.xmax, 0.0);
    PadRange(box.ymin, box.ymax, 0.05);
    if (p.log_y) {
      box.ymin = std::pow(10.0, box.ymin);
      box.ymax = std::pow(10.0, box.ymax);
    }
  }
  if (!(box.xmax > box.xmin && box.ymax > box.ymin))
    return absl::InvalidArgumentError(
        absl::StrCat("lines: empty box [", box.xmin, ", ", box.xmax, "] x [",
                     box.ymin, ", ", box.ymax, "]"));
  const Axis x = MakeAxis(box.xmin, box.xmax, p.xlabel);
  const Axis y = MakeAxis(box.ymin, box.ymax, p.ylabel, p.log_y);
  FT_ASSIGN_OR_RETURN(const Axes axes, LayoutAxes(canvas, cell, p.title, x, y));
  DrawGrid(canvas, axes);
  cairo_t* cr = canvas.cr();
  const Rect& a = axes.area;
  cairo_save(cr);
  cairo_rectangle(cr, a.x, a.y, a.w, a.h);
  cairo_clip(cr);
  std::vector<LegendEntry> legend;
  for (size_t s = 0; s < p.series.size(); ++s) {
    const LineSeries& l = p.series[s];
    const Color color = l.color.value_or(SeriesColor(s));
    canvas.SetColor(color, l.alpha);
    cairo_set_line_width(cr, l.width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    const double dash[2] = {6, 4};
    cairo_set_dash(cr, dash, l.dashed ? 2 : 0, 0);
    bool open = false;
    for (size_t i = 0; i < l.x.size(); ++i) {
      double px = axes.PixelX(l.x[i]), py = axes.PixelY(l.y[i]);
      if (!std::isfinite(px) || !std::isfinite(py)) {
        open = false;
        continue;
      }
      // Far outside the area (clipped anyway): keep within cairo's
      // fixed-point range.
      px = std::clamp(px, -1e6, 1e6);
      py = std::clamp(py, -1e6, 1e6);
      if (open)
        cairo_line_to(cr, px, py);
      else
        cairo_move_to(cr, px, py);
      open = true;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (l.markers)
      for (size_t i = 0; i < l.x.size(); ++i) {
        const double px = axes.PixelX(l.x[i]), py = axes.PixelY(l.y[i]);
        if (!std::isfinite(px) || !std::isfinite(py)) continue;
        cairo_arc(cr, px, py, 3.0, 0, 2 * M_PI);
        cairo_fill(cr);
      }
    legend.push_back({l.label, color,
                      l.markers  ? LegendMark::kLineWithDot
                      : l.dashed ? LegendMark::kDashedLine
                                 : LegendMark::kLine,
                      l.alpha});
  }
  cairo_restore(cr);
  DrawAxes(canvas, axes, p.title);
  DrawLegend(canvas, a, legend);
  return axes;
}

}  // namespace flowtape::viz
