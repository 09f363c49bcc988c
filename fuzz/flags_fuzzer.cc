// The experiments' flag checks on arbitrary text: a size list
// (ParseSizeList, as --hidden), integer and floating-point flag values
// parsed as Abseil parses the command line, CheckFlags, and the memory
// estimate of experiments/budget.h (FlowFootprint, ImageFlowFootprint,
// CheckMemory). Input: lines "hidden", "layers", "batch", "n_train",
// "max_memory_gb", "flow". Accepted size lists are positive; an accepted
// footprint is finite and within the limit; sizes never overflow.
#include <cmath>
#include <string>
#include <vector>

#include "absl/flags/marshalling.h"
#include "absl/strings/str_split.h"
#include "experiments/budget.h"
#include "experiments/common.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace ex = flowtape::experiments;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> f = absl::StrSplit(text, '\n');
  f.resize(6);
  auto hidden = ex::ParseSizeList("hidden", f[0]);
  flowtape::fuzz::Count(hidden.status());
  if (hidden.ok())
    for (int64_t h : *hidden) FUZZ_EXPECT(h > 0);
  // Abseil's own parsers, as absl::ParseCommandLine applies them.
  std::string err;
  int layers = 0;
  int64_t batch = 0, n_train = 0;
  double gb = 0;
  const bool ok_layers = absl::ParseFlag(f[1], &layers, &err);
  const bool ok_batch = absl::ParseFlag(f[2], &batch, &err);
  const bool ok_n = absl::ParseFlag(f[3], &n_train, &err);
  const bool ok_gb = absl::ParseFlag(f[4], &gb, &err);
  absl::Status flags = ex::CheckFlags({
      {"layers", layers, ok_layers && layers > 0, "> 0"},
      {"batch", batch, ok_batch && batch > 0, "> 0"},
      {"n_train", n_train, ok_n && n_train > 0, "> 0"},
      {"max_memory_gb", gb, ok_gb && std::isfinite(gb) && gb >= 0,
       "finite and >= 0"},
  });
  flowtape::fuzz::Count(flags);
  if (!flags.ok() || !hidden.ok()) return 0;
  const double limit = ex::MemoryLimitBytes(gb);
  FUZZ_EXPECT(limit > 0);
  for (const ex::Footprint& fp :
       {ex::FlowFootprint(layers, 2, 0, *hidden, batch, 2.2 * n_train),
        ex::ImageFlowFootprint(f[5], layers, 2, layers, batch, *hidden, 10, 1,
                               28, 28, batch)}) {
    absl::Status s = ex::CheckMemory(fp, "--fuzz", limit);
    flowtape::fuzz::Count(s);
    if (s.ok()) {
      FUZZ_EXPECT(std::isfinite(fp.Bytes()) && fp.Bytes() <= limit);
      FUZZ_EXPECT(fp.parameters >= 0 && fp.activations_per_example >= 0);
    }
  }
  return 0;
}
