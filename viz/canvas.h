// Canvas: the raster that figures draw on, a cairo image surface (RGB,
// anti-aliased paths and text) in pixel coordinates: (0, 0) is the top-left
// corner, x to the right, y downwards. It starts white.
//
// Text is DejaVu Sans (fontconfig's "DejaVu Sans", regular or bold) at a size
// in pixels. Text(s, x, y, size, ax, ay, angle) anchors the text's logical box
// (advance width x (ascent + descent)): ax = 0, 0.5, 1 puts x at its left
// edge, centre, right edge; ay = 0, 0.5, 1 puts y at its top, middle, bottom.
// The box is then turned by `angle` radians about (x, y), cairo's convention
// (positive turns clockwise on screen; -pi/2 reads upwards).
//
// Text that is not valid UTF-8 is drawn with '?' for the bad bytes.
// status(): cairo's state; once a drawing call failed (e.g. a non-finite
// transform) cairo ignores every later one, so figures check it.
//
// Ink(r, background): the fraction of pixels of r (clipped to the canvas)
// that differ from `background` by more than 8/255 in a channel: what the
// legend uses to find an empty place.
//
// WritePng(path): the canvas as an 8-bit RGB PNG. Errors name the path and
// the system's reason (errno text): the file cannot be created, or a write or
// the final close fails (e.g. a full disk).
#ifndef FLOWTAPE_VIZ_CANVAS_H_
#define FLOWTAPE_VIZ_CANVAS_H_

#include <cairo/cairo.h>

#include <string>

#include "absl/status/status.h"
#include "viz/colormap.h"
#include "viz/png.h"

namespace flowtape::viz {

// A rectangle in pixels: left, top, width, height.
struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
};

class Canvas {
 public:
  Canvas(int width, int height);  // FT_CHECKs a positive size
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  int width() const { return width_; }
  int height() const { return height_; }
  // For paths: cairo_move_to(canvas.cr(), ...), cairo_stroke(...).
  cairo_t* cr() const { return cr_; }

  void SetColor(const Color& c, double alpha = 1.0);
  void Text(const std::string& s, double x, double y, double size, double ax,
            double ay, double angle = 0.0, bool bold = false);
  double TextWidth(const std::string& s, double size, bool bold = false) const;
  double TextHeight(double size) const;  // ascent + descent
  // Draws `image` scaled into `dest` (nearest-neighbour or bilinear).
  void DrawImage(const Image& image, const Rect& dest, bool smooth);

  absl::Status status() const;
  double Ink(const Rect& r, const Color& background = {1, 1, 1}) const;
  Image ToImage() const;
  absl::Status WritePng(const std::string& path) const;

 private:
  void SetFont(double size, bool bold) const;

  int width_, height_;
  cairo_surface_t* surface_;
  cairo_t* cr_;
};

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_CANVAS_H_
