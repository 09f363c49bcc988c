// Earth catalogue loader (data/earth.h) on arbitrary bytes, in memory and
// as a file; accepted catalogues are finite unit vectors, and the 80/10/10
// split either refuses (< 10 rows) or partitions them into nonempty parts.
#include <cmath>
#include <string>

#include "data/earth.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto x = flowtape::data::ParseEarthCsv(bytes, "fuzz.csv");
  flowtape::fuzz::Count(x.status());
  auto file = flowtape::data::LoadEarthCsv(
      flowtape::fuzz::WriteScratch(data, size, "_earth.csv"));
  FUZZ_EXPECT(file.ok() == x.ok() ||
              (size >= 2 && data[0] == 0x1f && data[1] == 0x8b));
  if (!x.ok()) return 0;
  FUZZ_EXPECT(x->shape().rank() == 2 && x->dim(1) == 3 && x->dim(0) > 0);
  for (int64_t i = 0; i < x->dim(0); ++i) {
    const double* p = x->data<double>() + 3 * i;
    FUZZ_EXPECT(std::isfinite(p[0]) && std::isfinite(p[1]) &&
                std::isfinite(p[2]));
    FUZZ_EXPECT(std::fabs(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] - 1) < 1e-12);
  }
  auto split = flowtape::data::RandomSplit(*x, size);
  FUZZ_EXPECT(split.ok() == (x->dim(0) >= flowtape::data::kMinSplitRows));
  if (split.ok()) {
    FUZZ_EXPECT(split->train.dim(0) > 0 && split->val.dim(0) > 0 &&
                split->test.dim(0) > 0);
    FUZZ_EXPECT(split->train.dim(0) + split->val.dim(0) + split->test.dim(0) ==
                x->dim(0));
  }
  return 0;
}
