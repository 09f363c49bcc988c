// Colour bar: the viridis scale of a heat map as a vertical bar to the right
// of its plot area, as tall as the area, with ticks (NiceTicks over
// [vmin, vmax]) and a label naming the quantity (e.g. "p(x)",
// "log p(x) (nats)"). ColorbarWidth is the room it takes (pass it to
// LayoutAxes as reserve_right).
#ifndef FLOWTAPE_VIZ_COLORBAR_H_
#define FLOWTAPE_VIZ_COLORBAR_H_

#include <string>

#include "viz/canvas.h"

namespace flowtape::viz {

double ColorbarWidth(const Canvas& canvas, double vmin, double vmax,
                     const std::string& label);
// Returns the bar's rectangle. FT_CHECKs vmax > vmin.
Rect DrawColorbar(Canvas& canvas, const Rect& plot_area, double vmin,
                  double vmax, const std::string& label);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_COLORBAR_H_
