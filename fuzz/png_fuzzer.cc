// viz::ReadPng on arbitrary bytes as a file: an accepted image is within the
// documented limits and its pixel buffer matches its size; every accepted
// image survives a WritePng / ReadPng round trip unchanged.
#include <string>

#include "fuzz/fuzz_util.h"
#include "viz/png.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using flowtape::viz::Image;
  const std::string path = flowtape::fuzz::WriteScratch(data, size, ".png");
  auto image = flowtape::viz::ReadPng(path);
  flowtape::fuzz::Count(image.status());
  if (!image.ok()) return 0;
  FUZZ_EXPECT(image->width > 0 && image->height > 0);
  FUZZ_EXPECT(image->width <= flowtape::viz::kPngMaxSide &&
              image->height <= flowtape::viz::kPngMaxSide);
  FUZZ_EXPECT(image->rgb.size() ==
              3 * static_cast<size_t>(image->width) * image->height);
  const std::string copy = path + ".copy.png";
  FUZZ_EXPECT(flowtape::viz::WritePng(copy, *image).ok());
  auto back = flowtape::viz::ReadPng(copy);
  FUZZ_EXPECT(back.ok() && back->rgb == image->rgb);
  return 0;
}
