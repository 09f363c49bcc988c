#include "viz/histogram.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "viz/legend.h"

namespace flowtape::viz {

std::vector<double> HistogramDensity(const std::vector<double>& values,
                                     int bins, double lo, double hi) {
  std::vector<double> h(bins, 0.0);
  const double width = (hi - lo) / bins;
  int64_t n = 0;
  for (double v : values) {
    if (!(v >= lo && v <= hi)) continue;  // also drops NaN
    const int b = std::min(bins - 1, static_cast<int>((v - lo) / width));
    h[b] += 1;
    ++n;
  }
  if (n == 0) return {};
  for (double& v : h) v /= n * width;
  return h;
}

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell,
                          const Histogram& p) {
  if (p.bins < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("histogram: ", p.bins, " bins"));
  double lo = p.lo, hi = p.hi;
  if (std::isnan(lo) || std::isnan(hi)) {
    double dlo = INFINITY, dhi = -INFINITY;
    for (const HistogramSeries& s : p.series)
      IncludeInRange(s.values, dlo, dhi);
    PadRange(dlo, dhi, 0.0);
    if (std::isnan(lo)) lo = dlo;
    if (std::isnan(hi)) hi = dhi;
  }
  if (!(hi > lo) || !std::isfinite(hi - lo))
    return absl::InvalidArgumentError(
        absl::StrCat("histogram: range [", lo, ", ", hi, "]"));
  std::vector<std::vector<double>> heights;
  double peak = 0;
  for (const HistogramSeries& s : p.series) {
    heights.push_back(HistogramDensity(s.values, p.bins, lo, hi));
    for (double v : heights.back()) peak = std::max(peak, v);
  }
  const Axis x = MakeAxis(lo, hi, p.xlabel);
  const Axis y = MakeAxis(0, peak > 0 ? peak * 1.08 : 1.0, p.ylabel);
  FT_ASSIGN_OR_RETURN(const Axes axes, LayoutAxes(canvas, cell, p.title, x, y));
  cairo_t* cr = canvas.cr();
  std::vector<LegendEntry> legend;
  const double base = axes.PixelY(0);
  for (size_t s = 0; s < p.series.size(); ++s) {
    const Color color = p.series[s].color.value_or(SeriesColor(s));
    legend.push_back({p.series[s].label, color, LegendMark::kBar, 0.35});
    if (heights[s].empty()) continue;
    // Bars, then the outline of their union as one step line.
    const double width = (hi - lo) / p.bins;
    cairo_move_to(cr, axes.PixelX(lo), base);
    for (int b = 0; b < p.bins; ++b) {
      const double top = axes.PixelY(heights[s][b]);
      cairo_line_to(cr, axes.PixelX(lo + b * width), top);
      cairo_line_to(cr, axes.PixelX(lo + (b + 1) * width), top);
    }
    cairo_line_to(cr, axes.PixelX(hi), base);
    cairo_close_path(cr);
    canvas.SetColor(color, 0.35);
    cairo_fill_preserve(cr);
    canvas.SetColor(color);
    cairo_set_line_width(cr, 1.5);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
    cairo_stroke(cr);
  }
  DrawAxes(canvas, axes, p.title);
  DrawLegend(canvas, axes.area, legend);
  return axes;
}

}  // namespace flowtape::viz
