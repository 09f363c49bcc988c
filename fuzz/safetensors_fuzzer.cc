// safetensors reader (io/safetensors.h) on arbitrary bytes, in memory and
// as a file: both agree; an accepted file's tensors are rank <= 4, tile
// its data exactly and round-trip through the writer bit for bit;
// ImportSafetensors into a small MAF either succeeds with finite values and
// 0/1 masks, or fails and leaves the model untouched.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "io/safetensors.h"
#include "io/torch_exchange.h"
#include "models/zoo.h"

namespace {

using flowtape::Tensor;
using flowtape::nn::NamedTensors;

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(),
                     a.numel() * flowtape::DTypeSize(a.dtype())) == 0;
}

std::vector<std::vector<double>> State(const flowtape::nn::Module& m) {
  std::vector<std::vector<double>> v;
  for (const auto& list : {m.NamedParameters(), m.NamedBuffers()})
    for (const auto& [name, t] : list) v.push_back(t.ToVector());
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace io = flowtape::io;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  io::Metadata meta;
  auto decoded = io::DecodeSafetensors(bytes, "fuzz", &meta);
  flowtape::fuzz::Count(decoded.status());
  const std::string path =
      flowtape::fuzz::WriteScratch(data, size, ".safetensors");
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip) FUZZ_EXPECT(io::ReadSafetensors(path).ok() == decoded.ok());
  if (decoded.ok()) {
    size_t bytes_of_data = 0;
    for (const auto& [name, t] : *decoded) {
      FUZZ_EXPECT(t.rank() <= 4 && !name.empty());
      bytes_of_data += t.numel() * flowtape::DTypeSize(t.dtype());
    }
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t{data[i]} << (8 * i);
    FUZZ_EXPECT(8 + n + bytes_of_data == size);
    io::Metadata meta2;
    auto back = io::DecodeSafetensors(io::EncodeSafetensors(*decoded, meta),
                                      "rt", &meta2);
    FUZZ_EXPECT(back.ok() && back->size() == decoded->size() && meta2 == meta);
    for (size_t i = 0; back.ok() && i < back->size(); ++i)
      FUZZ_EXPECT((*back)[i].first == (*decoded)[i].first &&
                  SameBits((*back)[i].second, (*decoded)[i].second));
  }
  flowtape::models::ModelConfig c;
  c.event = flowtape::Shape{2};
  c.layers = 1;
  c.hidden = {3};
  flowtape::Rng rng(1);
  auto model = flowtape::models::MakeModel("maf", c, rng).value();
  const auto before = State(*model);
  absl::Status s = io::ImportSafetensors(path, *model);
  flowtape::fuzz::Count(s);
  if (s.ok()) {
    for (const auto& v : State(*model))
      for (double x : v) FUZZ_EXPECT(std::isfinite(x));
  } else {
    FUZZ_EXPECT(State(*model) == before);
  }
  return 0;
}
