#include "viz/colorbar.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autodiff/check.h"
#include "viz/axes.h"
#include "viz/colormap.h"

namespace flowtape::viz {
namespace {

constexpr double kBarGap = 14, kBarWidth = 16, kTick = 4, kGap = 4;

}  // namespace

double ColorbarWidth(const Canvas& canvas, double vmin, double vmax,
                     const std::string& label) {
  const Axis a = MakeAxis(vmin, vmax, label);
  double labels_w = 0;
  for (const std::string& s : LabelsOf(a, TicksOf(a, 6)))
    labels_w = std::max(labels_w, canvas.TextWidth(s, kTickFont));
  return kBarGap + kBarWidth + kTick + kGap + labels_w +
         (label.empty() ? 0 : 2 * kGap + canvas.TextHeight(kLabelFont)) + 4;
}

Rect DrawColorbar(Canvas& canvas, const Rect& plot_area, double vmin,
                  double vmax, const std::string& label) {
  FT_CHECK(vmax > vmin, "colorbar: range [", vmin, ", ", vmax, "]");
  const Rect bar{plot_area.right() + kBarGap, plot_area.y, kBarWidth,
                 plot_area.h};
  // 256 rows from vmax (top) down to vmin, stretched smoothly.
  const int n = 256;
  std::vector<double> ramp(n);
  for (int i = 0; i < n; ++i) ramp[i] = 1.0 - (i + 0.5) / n;
  canvas.DrawImage(Colorize(1, n, ramp, 0.0, 1.0), bar, /*smooth=*/true);
  cairo_t* cr = canvas.cr();
  canvas.SetColor({0.15, 0.15, 0.15});
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, bar.x + 0.5, bar.y + 0.5, bar.w - 1, bar.h - 1);
  cairo_stroke(cr);
  Axes scale{bar, MakeAxis(0, 1, ""), MakeAxis(vmin, vmax, label)};
  const std::vector<double> ticks = TicksOf(scale.y, 6);
  const std::vector<std::string> labels = LabelsOf(scale.y, ticks);
  double labels_w = 0;
  for (size_t i = 0; i < ticks.size(); ++i) {
    const double py = std::round(scale.PixelY(ticks[i])) + 0.5;
    cairo_move_to(cr, bar.right(), py);
    cairo_line_to(cr, bar.right() + kTick, py);
    cairo_stroke(cr);
    canvas.Text(labels[i], bar.right() + kTick + kGap, py, kTickFont, 0.0, 0.5);
    labels_w = std::max(labels_w, canvas.TextWidth(labels[i], kTickFont));
  }
  if (!label.empty()) {
    canvas.SetColor({0, 0, 0});
    canvas.Text(label, bar.right() + kTick + kGap + labels_w + 2 * kGap,
                bar.y + bar.h / 2, kLabelFont, 0.5, 0.0, -M_PI / 2);
  }
  return bar;
}

}  // namespace flowtape::viz
