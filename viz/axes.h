// Axes: the map from data coordinates to the pixels of a plot area, the tick
// positions and labels, and the frame drawn around a panel (title, ticks,
// tick labels, axis labels).
//
//   Linear axis:  px = area.x + (v - lo) / (hi - lo) * area.w        (x)
//                 py = area.y + area.h - (v - lo) / (hi - lo) * area.h (y)
//   Log axis (log = true, 0 < lo < hi): the same with log10 v, log10 lo,
//   log10 hi. lo > hi reverses an axis (image rows grow downwards).
//
//   NiceTicks(lo, hi, target): multiples of a step 1, 2 or 5 x 10^k inside
//     [lo, hi], the step chosen so that about `target` ticks fall inside
//     (none for an empty or non-finite range; at most 4 * target + 1).
//   LogTicks(lo, hi): powers of ten inside [lo, hi]; with fewer than two of
//     them, 1, 2, 5 x 10^k; with fewer than three of those, NiceTicks.
//   FormatTicks: one format for all ticks of an axis: fixed decimals, as
//     many as the step needs ("0.5", "1.0", "1.5"), or %g beyond 1e5 / below
//     1e-4; powers of ten on log axes as 10^k in superscript digits.
//
// LayoutAxes places the plot area inside a panel's cell leaving room for the
// title (top), the x tick labels and label (bottom), the y tick labels and
// label (left) and `reserve_right` pixels on the right (colour bars); with
// aspect > 0 the area is shrunk (and centred) to height / width = aspect.
// DrawAxes then draws the frame, ticks, labels and title. Font sizes in
// pixels: kTickFont, kLabelFont, kTitleFont (bold).
#ifndef FLOWTAPE_VIZ_AXES_H_
#define FLOWTAPE_VIZ_AXES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "viz/canvas.h"

namespace flowtape::viz {

inline constexpr double kTickFont = 13.0;
inline constexpr double kLabelFont = 14.5;
inline constexpr double kTitleFont = 15.5;

// A data-space rectangle [xmin, xmax] x [ymin, ymax].
struct Box {
  double xmin = 0, xmax = 1, ymin = 0, ymax = 1;
};

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::string label{};
  std::vector<double> ticks{};                  // empty: NiceTicks / LogTicks
  std::function<std::string(double)> format{};  // empty: FormatTicks
};

Axis MakeAxis(double lo, double hi, std::string label = "", bool log = false);

struct Axes {
  Rect area{};  // the plot area in pixels
  Axis x{}, y{};

  double PixelX(double v) const;
  double PixelY(double v) const;
  double DataX(double px) const;
  double DataY(double py) const;
};

std::vector<double> NiceTicks(double lo, double hi, int target = 5);
std::vector<double> LogTicks(double lo, double hi);
std::vector<std::string> FormatTicks(const std::vector<double>& ticks,
                                     bool log = false);
// The ticks an axis shows (its own, or the automatic ones) and their labels.
std::vector<double> TicksOf(const Axis& axis, int target = 5);
std::vector<std::string> LabelsOf(const Axis& axis,
                                  const std::vector<double>& ticks);

// Automatic ranges: start from lo = +inf, hi = -inf, widen with the finite
// values of each series (IncludeInRange), then PadRange: no value gives
// [0, 1], a single value v gives [v - 0.5, v + 0.5], and the range grows by
// pad x its span on each side.
void IncludeInRange(const std::vector<double>& values, double& lo, double& hi);
void PadRange(double& lo, double& hi, double pad);

// InvalidArgument when the cell is too small to hold a plot area of at least
// 20 x 20 pixels, or a log axis has lo <= 0.
absl::StatusOr<Axes> LayoutAxes(const Canvas& canvas, const Rect& cell,
                                const std::string& title, const Axis& x,
                                const Axis& y, double reserve_right = 0.0,
                                double aspect = 0.0);
void DrawAxes(Canvas& canvas, const Axes& axes, const std::string& title);
// Light grey lines across the plot area at the y ticks (line plots).
void DrawGrid(Canvas& canvas, const Axes& axes);
// The title alone, centred above `area` (panels without axes).
void DrawTitle(Canvas& canvas, const Rect& area, const std::string& title);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_AXES_H_
