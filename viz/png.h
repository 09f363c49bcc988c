// RGB images and PNG files (libpng).
//
// Image: width x height pixels, 8-bit RGB, row-major from the top-left corner
// (rgb[3 * (y * width + x) + c]). WritePng writes an 8-bit RGB PNG; ReadPng
// reads any PNG libpng understands and converts it to 8-bit RGB (palette,
// grey, 16-bit and alpha are expanded / stripped). Errors name the file.
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

absl::Status WritePng(const std::string& path, const Image& image);
absl::StatusOr<Image> ReadPng(const std::string& path);

// Places images side by side (top-aligned) with `pad` white pixels between.
Image HStack(const std::vector<Image>& images, int pad = 4);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_PNG_H_
