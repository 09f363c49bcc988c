// IDX loaders (data/idx.h) on arbitrary bytes: images and labels, from a
// plain file and from the same bytes gzipped. Accepted images are
// [N, 1, H, W] of integers 0..255 whose count matches the payload.
#include <cmath>
#include <string>

#include "data/idx.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using flowtape::fuzz::WriteScratch;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string gz = flowtape::fuzz::Gzip(bytes);
  const auto* gz_data = reinterpret_cast<const uint8_t*>(gz.data());
  // The plain file is decompressed too when it starts with gzip's magic;
  // the gzipped copy always decodes to exactly `data`.
  const bool magic = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  for (const std::string& path : {WriteScratch(gz_data, gz.size(), ".idx.gz"),
                                  WriteScratch(data, size, ".idx")}) {
    const bool exact = path.size() > 3 && path.substr(path.size() - 3) == ".gz";
    auto images = flowtape::data::LoadIdxImages(path);
    flowtape::fuzz::Count(images.status());
    if (!exact && magic) continue;
    if (images.ok()) {
      const flowtape::Tensor& t = *images;
      FUZZ_EXPECT(t.shape().rank() == 4 && t.dim(1) == 1);
      FUZZ_EXPECT(16 + t.numel() == static_cast<int64_t>(size));
      for (int64_t i = 0; i < t.numel(); ++i)
        FUZZ_EXPECT(t.data<double>()[i] == static_cast<uint8_t>(data[16 + i]));
    }
    auto labels = flowtape::data::LoadIdxLabels(path);
    flowtape::fuzz::Count(labels.status());
    if (labels.ok()) {
      FUZZ_EXPECT(8 + labels->size() == size);
      for (size_t i = 0; i < labels->size(); ++i)
        FUZZ_EXPECT((*labels)[i] == data[8 + i]);
    }
  }
  // The parsers on the bytes in memory agree with the gzipped loader.
  auto images = flowtape::data::ParseIdxImages(bytes, "fuzz.idx");
  auto from_gz = flowtape::data::LoadIdxImages(
      WriteScratch(gz_data, gz.size(), ".idx.gz"));
  FUZZ_EXPECT(images.ok() == from_gz.ok());
  auto labels = flowtape::data::ParseIdxLabels(bytes, "fuzz.idx");
  FUZZ_EXPECT(labels.ok() == flowtape::data::LoadIdxLabels(
                                 WriteScratch(gz_data, gz.size(), ".idx.gz"))
                                 .ok());
  return 0;
}
