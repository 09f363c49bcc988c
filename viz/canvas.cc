#include "viz/canvas.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::viz {
namespace {

// cairo writes the PNG through this; the first failing write keeps its errno.
struct PngSink {
  FILE* file;
  int error = 0;
};

cairo_status_t WriteToFile(void* closure, const unsigned char* data,
                           unsigned int length) {
  auto* sink = static_cast<PngSink*>(closure);
  if (std::fwrite(data, 1, length, sink->file) != length) {
    if (sink->error == 0) sink->error = errno != 0 ? errno : EIO;
    return CAIRO_STATUS_WRITE_ERROR;
  }
  return CAIRO_STATUS_SUCCESS;
}

// cairo refuses (and stops drawing after) text that is not UTF-8: bytes
// that do not form a valid sequence become '?'.
std::string ValidUtf8(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xe  ? 3
                       : (c >> 3) == 0x1e ? 4
                                          : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

absl::Status SystemError(int error, const std::string& what,
                         const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrCat(what, " ", path));
}

}  // namespace

Canvas::Canvas(int width, int height) : width_(width), height_(height) {
  FT_CHECK(width > 0 && height > 0, "canvas: size ", width, "x", height);
  surface_ = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  cr_ = cairo_create(surface_);
  FT_CHECK(cairo_status(cr_) == CAIRO_STATUS_SUCCESS,
           "canvas: cairo: ", cairo_status_to_string(cairo_status(cr_)));
  cairo_set_source_rgb(cr_, 1, 1, 1);
  cairo_paint(cr_);
  cairo_set_source_rgb(cr_, 0, 0, 0);
}

Canvas::~Canvas() {
  cairo_destroy(cr_);
  cairo_surface_destroy(surface_);
}

void Canvas::SetColor(const Color& c, double alpha) {
  cairo_set_source_rgba(cr_, c.r, c.g, c.b, alpha);
}

void Canvas::SetFont(double size, bool bold) const {
  cairo_select_font_face(
      cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
      bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr_, size);
}

double Canvas::TextWidth(const std::string& s, double size, bool bold) const {
  SetFont(size, bold);
  cairo_text_extents_t e;
  cairo_text_extents(cr_, ValidUtf8(s).c_str(), &e);
  return e.x_advance;
}

double Canvas::TextHeight(double size) const {
  SetFont(size, false);
  cairo_font_extents_t f;
  cairo_font_extents(cr_, &f);
  return f.ascent + f.descent;
}

void Canvas::Text(const std::string& text, double x, double y, double size,
                  double ax, double ay, double angle, bool bold) {
  const std::string s = ValidUtf8(text);
  SetFont(size, bold);
  cairo_text_extents_t e;
  cairo_text_extents(cr_, s.c_str(), &e);
  cairo_font_extents_t f;
  cairo_font_extents(cr_, &f);
  cairo_save(cr_);
  cairo_translate(cr_, x, y);
  cairo_rotate(cr_, angle);
  cairo_move_to(cr_, -ax * e.x_advance, f.ascent - ay * (f.ascent + f.descent));
  cairo_show_text(cr_, s.c_str());
  cairo_restore(cr_);
}

void Canvas::DrawImage(const Image& image, const Rect& dest, bool smooth) {
  cairo_surface_t* src =
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, image.width, image.height);
  cairo_surface_flush(src);
  unsigned char* data = cairo_image_surface_get_data(src);
  const int stride = cairo_image_surface_get_stride(src);
  for (int y = 0; y < image.height; ++y) {
    auto* row =
        reinterpret_cast<uint32_t*>(data + static_cast<size_t>(y) * stride);
    for (int x = 0; x < image.width; ++x) {
      const Rgb c = image.at(x, y);
      row[x] = (uint32_t{c.r} << 16) | (uint32_t{c.g} << 8) | c.b;
    }
  }
  cairo_surface_mark_dirty(src);
  cairo_save(cr_);
  cairo_rectangle(cr_, dest.x, dest.y, dest.w, dest.h);
  cairo_clip(cr_);
  cairo_translate(cr_, dest.x, dest.y);
  cairo_scale(cr_, dest.w / image.width, dest.h / image.height);
  cairo_set_source_surface(cr_, src, 0, 0);
  cairo_pattern_t* pattern = cairo_get_source(cr_);
  cairo_pattern_set_extend(pattern, CAIRO_EXTEND_PAD);
  cairo_pattern_set_filter(
      pattern, smooth ? CAIRO_FILTER_BILINEAR : CAIRO_FILTER_NEAREST);
  cairo_paint(cr_);
  cairo_restore(cr_);
  cairo_surface_destroy(src);
}

absl::Status Canvas::status() const {
  const cairo_status_t s = cairo_status(cr_);
  if (s == CAIRO_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cairo: ", cairo_status_to_string(s)));
}

double Canvas::Ink(const Rect& r, const Color& background) const {
  const Rgb bg = ToRgb(background);
  auto differs = [](uint32_t channel, uint8_t ref) {
    return std::abs(static_cast<int>(channel & 0xff) - ref) > 8;
  };
  cairo_surface_flush(surface_);
  const int x0 = std::max(0, static_cast<int>(std::floor(r.x)));
  const int y0 = std::max(0, static_cast<int>(std::floor(r.y)));
  const int x1 = std::min(width_, static_cast<int>(std::ceil(r.right())));
  const int y1 = std::min(height_, static_cast<int>(std::ceil(r.bottom())));
  if (x1 <= x0 || y1 <= y0) return 0.0;
  const unsigned char* data = cairo_image_surface_get_data(surface_);
  const int stride = cairo_image_surface_get_stride(surface_);
  int64_t inked = 0;
  for (int y = y0; y < y1; ++y) {
    auto* row = reinterpret_cast<const uint32_t*>(
        data + static_cast<size_t>(y) * stride);
    for (int x = x0; x < x1; ++x)
      inked += differs(row[x] >> 16, bg.r) || differs(row[x] >> 8, bg.g) ||
               differs(row[x], bg.b);
  }
  return static_cast<double>(inked) / ((x1 - x0) * (y1 - y0));
}

Image Canvas::ToImage() const {
  cairo_surface_flush(surface_);
  const unsigned char* data = cairo_image_surface_get_data(surface_);
  const int stride = cairo_image_surface_get_stride(surface_);
  Image image(width_, height_);
  for (int y = 0; y < height_; ++y) {
    auto* row = reinterpret_cast<const uint32_t*>(
        data + static_cast<size_t>(y) * stride);
    for (int x = 0; x < width_; ++x)
      image.set(
          x, y,
          {static_cast<uint8_t>(row[x] >> 16),
           static_cast<uint8_t>(row[x] >> 8), static_cast<uint8_t>(row[x])});
  }
  return image;
}

absl::Status Canvas::WritePng(const std::string& path) const {
  cairo_surface_flush(surface_);
  errno = 0;
  PngSink sink{std::fopen(path.c_str(), "wb")};
  if (sink.file == nullptr) return SystemError(errno, "cannot create", path);
  errno = 0;
  const cairo_status_t s =
      cairo_surface_write_to_png_stream(surface_, WriteToFile, &sink);
  // stdio buffers: a full disk often shows only when the buffer is flushed.
  errno = 0;
  const bool closed = std::fclose(sink.file) == 0;
  if (!closed && sink.error == 0) sink.error = errno != 0 ? errno : EIO;
  if (sink.error != 0) return SystemError(sink.error, "cannot write", path);
  if (s != CAIRO_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat(
        "cannot write ", path, ": cairo: ", cairo_status_to_string(s)));
  return absl::OkStatus();
}

}  // namespace flowtape::viz
