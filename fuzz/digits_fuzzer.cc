// The digits loader (data/datasets.h, LoadDigitsCsv) on arbitrary bytes as
// a file: accepted sets are [N, 1, 8, 8] of integers 0..16 with labels
// 0..9, the last kDigitsTest rows the test split.
#include <cmath>
#include <string>

#include "data/datasets.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      flowtape::fuzz::WriteScratch(data, size, "_digits.csv");
  for (const char* split : {"train", "test"}) {
    auto set = flowtape::data::LoadDigitsCsv(path, split);
    flowtape::fuzz::Count(set.status());
    if (!set.ok()) continue;
    const flowtape::Tensor& t = set->images;
    FUZZ_EXPECT(t.shape().rank() == 4 && t.dim(1) == 1 && t.dim(2) == 8 &&
                t.dim(3) == 8);
    FUZZ_EXPECT(static_cast<int64_t>(set->labels.size()) == t.dim(0));
    FUZZ_EXPECT(std::string(split) == "train" ||
                t.dim(0) == flowtape::data::kDigitsTest);
    for (int64_t i = 0; i < t.numel(); ++i)
      FUZZ_EXPECT(t.data<double>()[i] >= 0 && t.data<double>()[i] <= 16 &&
                  t.data<double>()[i] == std::floor(t.data<double>()[i]));
    for (int label : set->labels) FUZZ_EXPECT(label >= 0 && label <= 9);
  }
  return 0;
}
