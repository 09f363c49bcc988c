// RGB images and PNG files (libpng).
//
// Image: width x height pixels, 8-bit RGB, row-major from the top-left corner
// (rgb[3 * (y * width + x) + c]). WritePng writes an 8-bit RGB PNG; ReadPng
// reads any PNG libpng understands and converts it to 8-bit RGB (palette,
// grey, 16-bit and alpha are expanded / stripped). Errors name the file; a
// file that cannot be opened is errno's code and text (absl::ErrnoToStatus:
// NotFound, PermissionDenied, ...).
//
// ReadPng limits (checked on the header, before any pixel buffer exists):
//   * regular files only (a directory, FIFO or device is InvalidArgument;
//     a FIFO is never opened blocking), at most kPngMaxFileBytes (256 MiB);
//   * width, height <= kPngMaxSide (16384) and width * height <=
//     kPngMaxPixels (2^26 = 64 Mi pixels, 192 MiB as 8-bit RGB);
//   * the file must be large enough for the declared pixels: deflate
//     compresses at most 1032:1, so a file of S bytes holds at most
//     1032 S bytes of pixel data (height * ceil(width * bits per pixel / 8)
//     before filtering); a header declaring more is a truncated or corrupt
//     file;
//   * libpng's own limits are set to the same (png_set_user_limits) and
//     ancillary chunks are capped at 8 MiB each (png_set_chunk_malloc_max).
// Violations are InvalidArgument naming the file and the limit.
#ifndef FLOWTAPE_VIZ_PNG_H_
#define FLOWTAPE_VIZ_PNG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flowtape::viz {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

struct Image {
  Image() = default;
  Image(int w, int h, Rgb fill = {255, 255, 255});
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);  // ignores pixels outside the image
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

inline constexpr int kPngMaxSide = 16384;
inline constexpr int64_t kPngMaxPixels = int64_t{1} << 26;
inline constexpr int64_t kPngMaxFileBytes = int64_t{256} << 20;

absl::Status WritePng(const std::string& path, const Image& image);
absl::StatusOr<Image> ReadPng(const std::string& path);

// Places images side by side (top-aligned) with `pad` white pixels between.
Image HStack(const std::vector<Image>& images, int pad = 4);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_PNG_H_
