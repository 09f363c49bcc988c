// The lossy codec's container (compression/lossy.h) and the JPEG decoder
// (compression/lossy_jpeg.h) on arbitrary bytes. The codec is a fixed one
// (an orthogonal flow on 4 x 4 images, pixel units, Delta = 3); every input
// is decoded as given and with its stream length and CRC-32 made to match
// (mutations then reach the rANS decoder). An accepted container has
// N D symbols inside their tables, z_hat on the Delta grid, pixels in
// [0, 255], and decodes to the same values twice. The same bytes go to
// DecodeJpeg and, with the tables of quality 50, DecodeJpegAbbreviated: an
// accepted image is height x width pixels.
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "autodiff/tensor.h"
#include "compression/lossy.h"
#include "compression/lossy_jpeg.h"
#include "flows/householder.h"
#include "fuzz/fuzz_util.h"

namespace {

namespace fc = flowtape::compression;

const fc::LossyCodec& Codec() {
  static const fc::LossyCodec* codec = [] {
    flowtape::Rng rng(7);
    fc::LossyModel m;
    m.flow = *flowtape::flows::Householder::Create(16, 16, rng);
    m.image = flowtape::Shape{1, 4, 4};
    m.event = flowtape::Shape{16};
    m.pixel_map = fc::PixelMap::kIdentity;
    m.prior.mean.assign(16, 0.0);
    m.prior.scale.assign(16, 60.0);
    for (int i = 0; i < 16; ++i) m.prior.mean[i] = 8.0 * i;
    return new fc::LossyCodec(*fc::LossyCodec::Create(m, 3.0));
  }();
  return *codec;
}

void CheckContainer(const std::vector<uint8_t>& bytes) {
  const fc::LossyCodec& codec = Codec();
  auto d = codec.Decode(bytes);
  flowtape::fuzz::Count(d.status());
  if (!d.ok()) return;
  const int64_t n = d->pixels.dim(0);
  FUZZ_EXPECT(static_cast<int64_t>(d->symbols.size()) == n * codec.dims());
  FUZZ_EXPECT(d->z_hat.dim(0) == n && d->z_hat.dim(1) == codec.dims());
  for (int64_t i = 0; i < d->z_hat.numel(); ++i) {
    const double k = d->z_hat[i] / codec.delta();
    FUZZ_EXPECT(k == std::round(k));
  }
  for (int64_t i = 0; i < d->pixels.numel(); ++i)
    FUZZ_EXPECT(d->pixels[i] >= 0 && d->pixels[i] <= 255);
  auto again = codec.Decode(bytes);
  FUZZ_EXPECT(again.ok() && again->symbols == d->symbols);
}

void CheckJpeg(const fc::GrayImage& g) {
  FUZZ_EXPECT(g.height >= 1 && g.width >= 1 &&
              g.pixels.size() == static_cast<size_t>(g.height) * g.width);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  CheckContainer(bytes);
  if (size >= fc::kLossyHeaderBytes + 4) {
    const uint64_t stream = size - fc::kLossyHeaderBytes - 4;
    for (int i = 0; i < 8; ++i)
      bytes[40 + i] = static_cast<uint8_t>(stream >> (8 * i));
    const uint32_t crc = static_cast<uint32_t>(
        crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(size - 4)));
    for (int i = 0; i < 4; ++i)
      bytes[size - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
    CheckContainer(bytes);
  }
  auto jpeg = fc::DecodeJpeg(absl::MakeConstSpan(data, size));
  flowtape::fuzz::Count(jpeg.status());
  if (jpeg.ok()) CheckJpeg(*jpeg);
  static const std::vector<uint8_t> tables = *fc::JpegTables(50);
  auto abbreviated =
      fc::DecodeJpegAbbreviated(tables, absl::MakeConstSpan(data, size));
  flowtape::fuzz::Count(abbreviated.status());
  if (abbreviated.ok()) CheckJpeg(*abbreviated);
  return 0;
}
