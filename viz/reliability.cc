#include "viz/reliability.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "viz/colormap.h"
#include "viz/legend.h"

namespace flowtape::viz {

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell,
                          const Reliability& p) {
  const size_t bins = p.count.size();
  if (bins == 0 || p.accuracy.size() != bins || p.confidence.size() != bins)
    return absl::InvalidArgumentError(
        absl::StrCat("reliability: ", p.accuracy.size(), " accuracies, ",
                     p.confidence.size(), " confidences, ", bins, " counts"));
  for (int64_t c : p.count)
    if (c < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("reliability: bin count ", c));
  const Axis x = MakeAxis(0, 1, p.xlabel), y = MakeAxis(0, 1, p.ylabel);
  FT_ASSIGN_OR_RETURN(const Axes axes, LayoutAxes(canvas, cell, p.title, x, y,
                                                  0.0, /*aspect=*/1.0));
  cairo_t* cr = canvas.cr();
  const Color bar = SeriesColor(0), gap = SeriesColor(3);
  auto clamp01 = [](double v) {
    return std::clamp(std::isnan(v) ? 0.0 : v, 0.0, 1.0);
  };
  for (size_t b = 0; b < bins; ++b) {
    if (p.count[b] == 0) continue;
    const double x0 = axes.PixelX(static_cast<double>(b) / bins);
    const double x1 = axes.PixelX(static_cast<double>(b + 1) / bins);
    const double acc = axes.PixelY(clamp01(p.accuracy[b]));
    const double conf = axes.PixelY(clamp01(p.confidence[b]));
    const double base = axes.PixelY(0);
    cairo_rectangle(cr, x0, acc, x1 - x0, base - acc);
    canvas.SetColor(bar, 0.85);
    cairo_fill_preserve(cr);
    canvas.SetColor({1, 1, 1});
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
    HatchRect(canvas, {x0, std::min(acc, conf), x1 - x0, std::abs(conf - acc)},
              gap, 0.0);
  }
  const double dash[2] = {6, 4};
  cairo_set_dash(cr, dash, 2, 0);
  canvas.SetColor({0.3, 0.3, 0.3});
  cairo_set_line_width(cr, 1.5);
  cairo_move_to(cr, axes.PixelX(0), axes.PixelY(0));
  cairo_line_to(cr, axes.PixelX(1), axes.PixelY(1));
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  DrawAxes(canvas, axes, p.title);
  if (p.legend)
    DrawLegend(
        canvas, axes.area,
        {{"accuracy", bar, LegendMark::kBar, 0.85},
         {"gap to confidence", gap, LegendMark::kHatchedBar, 0.0},
         {"perfect calibration", {0.3, 0.3, 0.3}, LegendMark::kDashedLine}});
  return axes;
}

}  // namespace flowtape::viz
