// Legend: a framed box of (mark, label) rows inside a plot area, at the
// place whose box covers the least ink already drawn (pixels that differ from
// `background`), so that it hides as little data as possible. Places, in
// order of preference on ties: upper right, upper left, lower right, lower
// left, upper centre, lower centre, centre right, centre left, centre.
// Entries with an empty label are left out; nothing is drawn when no entry is
// left.
#ifndef FLOWTAPE_VIZ_LEGEND_H_
#define FLOWTAPE_VIZ_LEGEND_H_

#include <string>
#include <vector>

#include "viz/canvas.h"

namespace flowtape::viz {

// kHatchedBar: a box with diagonal lines (HatchRect).
enum class LegendMark {
  kDot,
  kLine,
  kDashedLine,
  kLineWithDot,
  kBar,
  kHatchedBar
};

struct LegendEntry {
  std::string label{};
  Color color{};
  LegendMark mark = LegendMark::kLine;
  double alpha = 1.0;
};

// Fills r with `color` at `alpha`, draws diagonal lines in `color` every
// `spacing` pixels across it, and outlines it.
void HatchRect(Canvas& canvas, const Rect& r, const Color& color, double alpha,
               double spacing = 6.0);

// Returns the box it drew (w = 0 when none).
Rect DrawLegend(Canvas& canvas, const Rect& area,
                const std::vector<LegendEntry>& entries,
                const Color& background = {1, 1, 1});

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_LEGEND_H_
