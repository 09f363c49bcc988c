// IDF container reader (compression/idf_codec.h) on arbitrary bytes, with a
// fixed small multi-scale model (1 x 4 x 4 images: 4 x 2 x 2 with a coupling,
// factor 2; 2 x 2 x 2 with a coupling, factor 1; final 1 x 2 x 2; random
// weights;
// fuzz/corpus/idf_container holds containers it wrote). Each
// input is tried as it is and "repaired" (the stream length and the CRC-32
// rewritten to match), so mutations reach the rANS decoder and the inverse
// flow rather than stopping at the checksum. Either Decompress fails with
// DataLoss or InvalidArgument, or the images it returns re-encode to exactly
// the bytes it read (decoding is the inverse of encoding).
#include <zlib.h>

#include <cstdint>
#include <string>

#include "autodiff/rng.h"
#include "compression/idf.h"
#include "compression/idf_codec.h"
#include "fuzz/fuzz_util.h"

namespace {

using flowtape::compression::IdfCodec;

const IdfCodec& Codec() {
  static const IdfCodec* codec = [] {
    flowtape::compression::IdfOptions o;
    o.height = 4;
    o.width = 4;
    o.levels = {{true, 1}, {false, 1}, {false, 0}};
    o.hidden = {3};
    o.components = 2;
    // Exact dyadic values from UniformInt: the same model (and model id)
    // in every build configuration.
    flowtape::Rng rng(7);
    auto flow = flowtape::compression::IntegerDiscreteFlow::Create(o, rng);
    for (auto& [name, p] : (*flow)->NamedParameters()) {
      double* v = p.mutable_data<double>();
      for (int64_t i = 0; i < p.numel(); ++i) {
        v[i] = name == "prior.means"
                   ? static_cast<double>(rng.UniformInt(256)) / 32
                   : (static_cast<double>(rng.UniformInt(201)) - 100) / 200;
      }
    }
    return new IdfCodec(*IdfCodec::Create(**flow));
  }();
  return *codec;
}

std::string Repaired(std::string bytes) {
  const size_t size = bytes.size();
  if (size < 44) return bytes;
  const uint64_t stream = size - 44;
  for (int i = 0; i < 8; ++i)
    bytes[32 + i] = static_cast<char>(stream >> (8 * i));
  const uint32_t crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(bytes.data()),
            static_cast<uInt>(size - 4)));
  for (int i = 0; i < 4; ++i) {
    bytes[size - 4 + i] = static_cast<char>(crc >> (8 * i));
  }
  return bytes;
}

void Check(const std::string& bytes) {
  const IdfCodec& codec = Codec();
  auto images = codec.Decompress(bytes);
  flowtape::fuzz::Count(images.status());
  if (!images.ok()) {
    const auto code = images.status().code();
    FUZZ_EXPECT(code == absl::StatusCode::kDataLoss ||
                code == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_EXPECT(images->height == 4 && images->width == 4);
  FUZZ_EXPECT(static_cast<int64_t>(images->pixels.size()) ==
              images->count * 16);
  auto again = codec.Compress(*images);
  FUZZ_EXPECT(again.ok());
  FUZZ_EXPECT(*again == bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  Check(Repaired(bytes));
  return 0;
}
