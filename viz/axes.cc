#include "viz/axes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flowtape::viz {
namespace {

constexpr double kTickLength = 5.0;
constexpr double kGap = 4.0;

double Scaled(const Axis& a, double v) { return a.log ? std::log10(v) : v; }

// Position of v along the axis as a fraction of [lo, hi].
double Fraction(const Axis& a, double v) {
  const double lo = Scaled(a, a.lo), hi = Scaled(a, a.hi);
  return (Scaled(a, v) - lo) / (hi - lo);
}

double Unfraction(const Axis& a, double f) {
  const double lo = Scaled(a, a.lo), hi = Scaled(a, a.hi);
  const double v = lo + f * (hi - lo);
  return a.log ? std::pow(10.0, v) : v;
}

// "−12" with a typographic minus sign.
std::string WithMinus(std::string s) {
  if (!s.empty() && s[0] == '-') s = "\u2212" + s.substr(1);
  return s;
}

std::string Superscript(int k) {
  static const char* kDigits[10] = {"\u2070", "\u00b9", "\u00b2", "\u00b3",
                                    "\u2074", "\u2075", "\u2076", "\u2077",
                                    "\u2078", "\u2079"};
  std::string out = k < 0 ? "\u207b" : "";
  for (char c : std::to_string(std::abs(k))) out += kDigits[c - '0'];
  return out;
}

bool IsPowerOfTen(double v) {
  if (!(v > 0)) return false;
  const double k = std::round(std::log10(v));
  return std::abs(v / std::pow(10.0, k) - 1.0) < 1e-9;
}

}  // namespace

Axis MakeAxis(double lo, double hi, std::string label, bool log) {
  Axis a;
  a.lo = lo;
  a.hi = hi;
  a.label = std::move(label);
  a.log = log;
  return a;
}

double Axes::PixelX(double v) const { return area.x + Fraction(x, v) * area.w; }
double Axes::PixelY(double v) const {
  return area.y + area.h - Fraction(y, v) * area.h;
}
double Axes::DataX(double px) const {
  return Unfraction(x, (px - area.x) / area.w);
}
double Axes::DataY(double py) const {
  return Unfraction(y, (area.y + area.h - py) / area.h);
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (lo > hi) std::swap(lo, hi);
  if (!(hi > lo) || !std::isfinite(hi - lo) || target < 1) return {};
  const double raw = (hi - lo) / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  const double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  const double first = std::ceil(lo / step - 1e-9);
  const double last = std::floor(hi / step + 1e-9);
  const double count = last - first + 1;
  if (!(count >= 1 && count <= 4.0 * target + 1)) return {};
  // Below 1 the step's decade is 1 / scale exactly: v = n / scale is the
  // double nearest the decimal (3 x 0.2 = 0.6, not 0.6000000000000001).
  const double scale = p < 1 ? std::round(1 / p) : 1;
  std::vector<double> ticks;
  for (int k = 0; k < static_cast<int>(count); ++k) {
    double v = (first + k) * step;
    if (p < 1 && std::isfinite(scale)) v = std::round(v * scale) / scale;
    ticks.push_back(std::abs(v) < 1e-9 * step ? 0.0 : v);
  }
  return ticks;
}

std::vector<double> LogTicks(double lo, double hi) {
  if (lo > hi) std::swap(lo, hi);
  if (!(lo > 0) || !(hi > lo) || !std::isfinite(hi)) return {};
  const int k0 = static_cast<int>(std::floor(std::log10(lo)));
  const int k1 = static_cast<int>(std::ceil(std::log10(hi)));
  auto inside = [&](double v) {
    return v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  };
  std::vector<double> decades;
  for (int k = k0; k <= k1; ++k)
    if (inside(std::pow(10.0, k))) decades.push_back(std::pow(10.0, k));
  if (decades.size() >= 2) {
    // At most 8 labels: every 2nd, 3rd, ... decade.
    const size_t stride = (decades.size() + 7) / 8;
    std::vector<double> thinned;
    for (size_t i = 0; i < decades.size(); i += stride)
      thinned.push_back(decades[i]);
    return thinned;
  }
  std::vector<double> ticks;
  for (int k = k0; k <= k1; ++k)
    for (double m : {1.0, 2.0, 5.0})
      if (inside(m * std::pow(10.0, k))) ticks.push_back(m * std::pow(10.0, k));
  if (ticks.size() >= 3) return ticks;
  return NiceTicks(lo, hi, 5);
}

std::vector<std::string> FormatTicks(const std::vector<double>& ticks,
                                     bool log) {
  std::vector<std::string> out;
  if (log && !ticks.empty() &&
      std::all_of(ticks.begin(), ticks.end(), IsPowerOfTen)) {
    for (double t : ticks)
      out.push_back("10" +
                    Superscript(static_cast<int>(std::round(std::log10(t)))));
    return out;
  }
  double top = 0;
  for (double t : ticks) top = std::max(top, std::abs(t));
  const bool general = top >= 1e5 || (top > 0 && top < 1e-4);
  // Fewest decimals that show every tick exactly.
  int decimals = 0;
  for (; !general && decimals < 6; ++decimals) {
    const double scale = std::pow(10.0, decimals);
    bool exact = true;
    for (double t : ticks)
      exact = exact && std::abs(t * scale - std::round(t * scale)) <
                           1e-6 * std::max(1.0, std::abs(t * scale));
    if (exact) break;
  }
  for (double t : ticks) {
    if (t == 0) t = 0;  // no "-0"
    out.push_back(WithMinus(general ? absl::StrFormat("%g", t)
                                    : absl::StrFormat("%.*f", decimals, t)));
  }
  return out;
}

std::vector<double> TicksOf(const Axis& axis, int target) {
  if (!axis.ticks.empty()) return axis.ticks;
  return axis.log ? LogTicks(axis.lo, axis.hi)
                  : NiceTicks(axis.lo, axis.hi, target);
}

std::vector<std::string> LabelsOf(const Axis& axis,
                                  const std::vector<double>& ticks) {
  if (!axis.format) return FormatTicks(ticks, axis.log);
  std::vector<std::string> out;
  for (double t : ticks) out.push_back(axis.format(t));
  return out;
}

void IncludeInRange(const std::vector<double>& values, double& lo, double& hi) {
  for (double v : values)
    if (std::isfinite(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
}

void PadRange(double& lo, double& hi, double pad) {
  if (!(lo <= hi)) {
    lo = 0;
    hi = 1;
  } else if (lo == hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double span = hi - lo;
  lo -= pad * span;
  hi += pad * span;
}

absl::StatusOr<Axes> LayoutAxes(const Canvas& canvas, const Rect& cell,
                                const std::string& title, const Axis& x,
                                const Axis& y, double reserve_right,
                                double aspect) {
  for (const Axis* a : {&x, &y})
    if (!(std::isfinite(a->lo) && std::isfinite(a->hi) && a->lo != a->hi) ||
        (a->log && !(a->lo > 0 && a->hi > 0)))
      return absl::InvalidArgumentError(
          absl::StrCat("axis range [", a->lo, ", ", a->hi, "]",
                       a->log ? " on a log axis (needs positive values)" : ""));
  const double tick_h = canvas.TextHeight(kTickFont);
  const double label_h = canvas.TextHeight(kLabelFont);
  double y_labels_w = 0;
  for (const std::string& s : LabelsOf(y, TicksOf(y)))
    y_labels_w = std::max(y_labels_w, canvas.TextWidth(s, kTickFont));
  const std::vector<std::string> x_labels = LabelsOf(x, TicksOf(x));
  const double last_x_w =
      x_labels.empty() ? 0 : canvas.TextWidth(x_labels.back(), kTickFont);
  const double top = title.empty() ? 10 : canvas.TextHeight(kTitleFont) + 14;
  const double bottom =
      kTickLength + kGap + tick_h + (x.label.empty() ? 0 : kGap + label_h) + 8;
  const double left = kTickLength + kGap + y_labels_w +
                      (y.label.empty() ? 0 : 2 * kGap + label_h) + 8;
  const double right = std::max(12.0, last_x_w / 2 + 6) + reserve_right;
  Rect a{cell.x + left, cell.y + top, cell.w - left - right,
         cell.h - top - bottom};
  if (aspect > 0 && a.w > 0 && a.h > 0) {
    if (a.h / a.w > aspect) {
      const double h = a.w * aspect;
      a.y += (a.h - h) / 2;
      a.h = h;
    } else {
      const double w = a.h / aspect;
      a.x += (a.w - w) / 2;
      a.w = w;
    }
  }
  // Whole pixels: crisp frame lines.
  a = {std::round(a.x), std::round(a.y), std::round(a.w), std::round(a.h)};
  if (a.w < 20 || a.h < 20)
    return absl::InvalidArgumentError(absl::StrCat(
        "panel of ", cell.w, "x", cell.h, " pixels leaves no room to plot"));
  return Axes{a, x, y};
}

void DrawTitle(Canvas& canvas, const Rect& area, const std::string& title) {
  if (title.empty()) return;
  canvas.SetColor({0, 0, 0});
  canvas.Text(title, area.x + area.w / 2, area.y - 8, kTitleFont, 0.5, 1.0, 0.0,
              /*bold=*/true);
}

void DrawGrid(Canvas& canvas, const Axes& axes) {
  cairo_t* cr = canvas.cr();
  const Rect& a = axes.area;
  canvas.SetColor({0.88, 0.88, 0.88});
  cairo_set_line_width(cr, 1.0);
  for (double t : TicksOf(axes.y)) {
    const double py = std::round(axes.PixelY(t)) + 0.5;
    if (py <= a.y + 1 || py >= a.bottom() - 1) continue;
    cairo_move_to(cr, a.x, py);
    cairo_line_to(cr, a.right(), py);
    cairo_stroke(cr);
  }
}

void DrawAxes(Canvas& canvas, const Axes& axes, const std::string& title) {
  cairo_t* cr = canvas.cr();
  const Rect& a = axes.area;
  canvas.SetColor({0.15, 0.15, 0.15});
  cairo_set_line_width(cr, 1.0);
  cairo_rectangle(cr, a.x + 0.5, a.y + 0.5, a.w - 1, a.h - 1);
  cairo_stroke(cr);
  // x ticks and labels.
  const std::vector<double> xt = TicksOf(axes.x);
  const std::vector<std::string> xl = LabelsOf(axes.x, xt);
  for (size_t i = 0; i < xt.size(); ++i) {
    const double px = std::round(axes.PixelX(xt[i])) + 0.5;
    if (px < a.x - 0.5 || px > a.right() + 0.5) continue;
    cairo_move_to(cr, px, a.bottom());
    cairo_line_to(cr, px, a.bottom() + kTickLength);
    cairo_stroke(cr);
    canvas.Text(xl[i], px, a.bottom() + kTickLength + kGap, kTickFont, 0.5,
                0.0);
  }
  // y ticks and labels.
  const std::vector<double> yt = TicksOf(axes.y);
  const std::vector<std::string> yl = LabelsOf(axes.y, yt);
  double y_labels_w = 0;
  for (size_t i = 0; i < yt.size(); ++i) {
    const double py = std::round(axes.PixelY(yt[i])) + 0.5;
    if (py < a.y - 0.5 || py > a.bottom() + 0.5) continue;
    cairo_move_to(cr, a.x, py);
    cairo_line_to(cr, a.x - kTickLength, py);
    cairo_stroke(cr);
    canvas.Text(yl[i], a.x - kTickLength - kGap, py, kTickFont, 1.0, 0.5);
    y_labels_w = std::max(y_labels_w, canvas.TextWidth(yl[i], kTickFont));
  }
  canvas.SetColor({0, 0, 0});
  if (!axes.x.label.empty())
    canvas.Text(
        axes.x.label, a.x + a.w / 2,
        a.bottom() + kTickLength + kGap + canvas.TextHeight(kTickFont) + kGap,
        kLabelFont, 0.5, 0.0);
  if (!axes.y.label.empty())
    canvas.Text(axes.y.label, a.x - kTickLength - kGap - y_labels_w - 2 * kGap,
                a.y + a.h / 2, kLabelFont, 0.5, 1.0, -M_PI / 2);
  DrawTitle(canvas, a, title);
}

}  // namespace flowtape::viz
