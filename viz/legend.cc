#include "viz/legend.h"

#include <algorithm>
#include <cmath>

#include "viz/axes.h"

namespace flowtape::viz {

void HatchRect(Canvas& canvas, const Rect& r, const Color& color, double alpha,
               double spacing) {
  cairo_t* cr = canvas.cr();
  cairo_save(cr);
  cairo_rectangle(cr, r.x, r.y, r.w, r.h);
  canvas.SetColor(color, alpha);
  cairo_fill_preserve(cr);
  cairo_clip(cr);
  canvas.SetColor(color, 0.9);
  cairo_set_line_width(cr, 1.0);
  for (double d = -r.h; d < r.w; d += spacing) {
    cairo_move_to(cr, r.x + d, r.bottom());
    cairo_line_to(cr, r.x + d + r.h, r.y);
  }
  cairo_stroke(cr);
  cairo_restore(cr);
  cairo_rectangle(cr, r.x, r.y, r.w, r.h);
  canvas.SetColor(color, 0.9);
  cairo_set_line_width(cr, 1.2);
  cairo_stroke(cr);
}

Rect DrawLegend(Canvas& canvas, const Rect& area,
                const std::vector<LegendEntry>& entries,
                const Color& background) {
  std::vector<const LegendEntry*> shown;
  for (const LegendEntry& e : entries)
    if (!e.label.empty()) shown.push_back(&e);
  if (shown.empty()) return {};
  const double font = kTickFont, row = canvas.TextHeight(font) + 4;
  const double mark_w = 24, pad = 7, inset = 8;
  double text_w = 0;
  for (const LegendEntry* e : shown)
    text_w = std::max(text_w, canvas.TextWidth(e->label, font));
  const double w = pad + mark_w + 6 + text_w + pad;
  const double h = 2 * pad - 4 + row * shown.size();
  const double left = area.x + inset, right = area.right() - inset - w,
               centre_x = area.x + (area.w - w) / 2;
  const double top = area.y + inset, bottom = area.bottom() - inset - h,
               centre_y = area.y + (area.h - h) / 2;
  const Rect places[9] = {{right, top, w, h},        {left, top, w, h},
                          {right, bottom, w, h},     {left, bottom, w, h},
                          {centre_x, top, w, h},     {centre_x, bottom, w, h},
                          {right, centre_y, w, h},   {left, centre_y, w, h},
                          {centre_x, centre_y, w, h}};
  Rect box = places[0];
  double least = canvas.Ink(box, background);
  for (const Rect& r : places) {
    const double ink = canvas.Ink(r, background);
    if (ink < least - 1e-3) {  // prefer the earlier place on near ties
      least = ink;
      box = r;
    }
  }
  box = {std::round(box.x), std::round(box.y), std::round(w), std::round(h)};
  cairo_t* cr = canvas.cr();
  cairo_rectangle(cr, box.x + 0.5, box.y + 0.5, box.w, box.h);
  canvas.SetColor({1, 1, 1}, 0.9);
  cairo_fill_preserve(cr);
  canvas.SetColor({0.75, 0.75, 0.75});
  cairo_set_line_width(cr, 1.0);
  cairo_stroke(cr);
  for (size_t i = 0; i < shown.size(); ++i) {
    const LegendEntry& e = *shown[i];
    const double cy = box.y + pad - 2 + row * (i + 0.5);
    const double x0 = box.x + pad, x1 = x0 + mark_w;
    canvas.SetColor(e.color, e.alpha);
    cairo_set_dash(cr, nullptr, 0, 0);
    switch (e.mark) {
      case LegendMark::kHatchedBar:
        HatchRect(canvas, {x0 + 2, cy - 5, mark_w - 4, 10}, e.color, e.alpha,
                  4.0);
        break;
      case LegendMark::kDot:
        cairo_arc(cr, (x0 + x1) / 2, cy, 3.5, 0, 2 * M_PI);
        cairo_fill(cr);
        break;
      case LegendMark::kBar:
        cairo_rectangle(cr, x0 + 2, cy - 5, mark_w - 4, 10);
        cairo_fill_preserve(cr);
        canvas.SetColor(e.color);
        cairo_set_line_width(cr, 1.2);
        cairo_stroke(cr);
        break;
      case LegendMark::kDashedLine: {
        const double dash[2] = {5, 3};
        cairo_set_dash(cr, dash, 2, 0);
      }
        [[fallthrough]];
      case LegendMark::kLine:
      case LegendMark::kLineWithDot:
        cairo_set_line_width(cr, 2.0);
        cairo_move_to(cr, x0, cy);
        cairo_line_to(cr, x1, cy);
        cairo_stroke(cr);
        cairo_set_dash(cr, nullptr, 0, 0);
        if (e.mark == LegendMark::kLineWithDot) {
          cairo_arc(cr, (x0 + x1) / 2, cy, 3.5, 0, 2 * M_PI);
          cairo_fill(cr);
        }
        break;
    }
    canvas.SetColor({0, 0, 0});
    canvas.Text(e.label, x1 + 6, cy, font, 0.0, 0.5);
  }
  return box;
}

}  // namespace flowtape::viz
