#include "viz/png.h"

#include <png.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::viz {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

}  // namespace

Image::Image(int w, int h, Rgb fill) : width(w), height(h) {
  FT_CHECK(w > 0 && h > 0, "image: size ", w, "x", h);
  rgb.resize(3 * static_cast<size_t>(w) * h);
  for (size_t i = 0; i < rgb.size(); i += 3) {
    rgb[i] = fill.r;
    rgb[i + 1] = fill.g;
    rgb[i + 2] = fill.b;
  }
}

Rgb Image::at(int x, int y) const {
  size_t i = 3 * (static_cast<size_t>(y) * width + x);
  return {rgb[i], rgb[i + 1], rgb[i + 2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  size_t i = 3 * (static_cast<size_t>(y) * width + x);
  rgb[i] = c.r;
  rgb[i + 1] = c.g;
  rgb[i + 2] = c.b;
}

absl::Status WritePng(const std::string& path, const Image& image) {
  FT_CHECK(
      image.rgb.size() == 3 * static_cast<size_t>(image.width) * image.height,
      "write_png: pixel buffer does not match ", image.width, "x",
      image.height);
  File f(std::fopen(path.c_str(), "wb"));
  if (!f)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", path, " for writing"));
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return absl::ResourceExhaustedError("libpng: cannot allocate a writer");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return absl::InternalError(absl::StrCat("libpng failed writing ", path));
  }
  png_init_io(png, f.get());
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y)
    png_write_row(png, const_cast<png_bytep>(image.rgb.data()) +
                           3 * static_cast<size_t>(y) * image.width);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(f.get()) != 0)
    return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

absl::StatusOr<Image> ReadPng(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  unsigned char sig[8] = {};
  if (std::fread(sig, 1, 8, f.get()) != 8 || png_sig_cmp(sig, 0, 8) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a PNG file (bad signature)"));
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    return absl::ResourceExhaustedError("libpng: cannot allocate a reader");
  }
  Image image;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": corrupt or truncated PNG"));
  }
  png_init_io(png, f.get());
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  png_set_expand(png);  // palette -> RGB, grey < 8 bits -> 8, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_read_update_info(png, info);
  const int w = png_get_image_width(png, info);
  const int h = png_get_image_height(png, info);
  image = Image(w, h);
  for (int y = 0; y < h; ++y)
    png_read_row(png, image.rgb.data() + 3 * static_cast<size_t>(y) * w,
                 nullptr);
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

Image HStack(const std::vector<Image>& images, int pad) {
  FT_CHECK(!images.empty(), "hstack: no images");
  int w = -pad, h = 0;
  for (const Image& im : images) {
    w += im.width + pad;
    h = std::max(h, im.height);
  }
  Image out(w, h);
  int x0 = 0;
  for (const Image& im : images) {
    for (int y = 0; y < im.height; ++y)
      for (int x = 0; x < im.width; ++x) out.set(x0 + x, y, im.at(x, y));
    x0 += im.width + pad;
  }
  return out;
}

}  // namespace flowtape::viz
