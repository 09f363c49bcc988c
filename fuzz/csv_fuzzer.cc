// CSV loader (data/csv.h) on arbitrary bytes: in memory, as a file and as a
// gzip file. Accepted tables must be rectangular with finite values that are
// zero or normal (the strict-number contract), and survive a round trip
// through "%.17g" text.
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <string>

#include "data/csv.h"
#include "fuzz/fuzz_util.h"

namespace {

void CheckTable(const flowtape::Tensor& t) {
  FUZZ_EXPECT(t.shape().rank() == 2 && t.dim(0) > 0 && t.dim(1) > 0);
  std::string text;
  for (int64_t i = 0; i < t.dim(0); ++i) {
    for (int64_t j = 0; j < t.dim(1); ++j) {
      const double v = t.data<double>()[i * t.dim(1) + j];
      FUZZ_EXPECT(std::isfinite(v));
      FUZZ_EXPECT(v == 0.0 || std::fabs(v) >= DBL_MIN);
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", v);
      text += (j ? "," : "") + std::string(buf);
    }
    text += "\n";
  }
  auto back = flowtape::data::ParseCsv(text);
  FUZZ_EXPECT(back.ok());
  FUZZ_EXPECT(back->ToVector() == t.ToVector());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using flowtape::data::CsvOptions;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  // The first byte picks the options, so the fuzzer explores them too.
  CsvOptions o;
  if (size > 0) {
    o.header = data[0] & 1;
    o.delimiter = (data[0] & 2) ? '\t' : ',';
  }
  auto mem = flowtape::data::ParseCsv(bytes, o, "fuzz.csv");
  flowtape::fuzz::Count(mem.status());
  if (mem.ok()) CheckTable(*mem);
  auto file = flowtape::data::LoadCsv(
      flowtape::fuzz::WriteScratch(data, size, ".csv"), o);
  // gzip is decoded transparently: a plain file parses as in memory unless
  // it is itself gzip; the gzipped copy always decodes to exactly `data`.
  const bool magic = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  FUZZ_EXPECT(file.ok() == mem.ok() || magic);
  const std::string gz = flowtape::fuzz::Gzip(bytes);
  auto zipped = flowtape::data::LoadCsv(
      flowtape::fuzz::WriteScratch(reinterpret_cast<const uint8_t*>(gz.data()),
                                   gz.size(), ".csv.gz"),
      o);
  FUZZ_EXPECT(zipped.ok() == mem.ok());
  if (zipped.ok() && mem.ok())
    FUZZ_EXPECT(zipped->ToVector() == mem->ToVector());
  return 0;
}
