// The experiments' flag checks on arbitrary text: a size list
// (ParseSizeList, as --hidden), integer and floating-point flag values
// parsed as Abseil parses the command line, CheckFlags, and the memory
// estimate of cli/budget.h (FlowFootprint, ImageFlowFootprint,
// CheckMemory), and the list flags' parsers (ParseDecimalList as --scales,
// --deltas / --rd_deltas and --sample_tols read it, ParseIntegerList as
// --euler_steps). Input: lines "hidden", "layers", "batch", "n_train",
// "max_memory_gb", "flow", "scales", "deltas", "sample_tols",
// "euler_steps". Accepted size lists are positive; an accepted list has one
// value per comma-separated item, each finite and in its flag's range; an
// accepted footprint is finite and within the limit; sizes never overflow.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/flags/marshalling.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/budget.h"
#include "cli/checks.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace cli = flowtape::cli;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> f = absl::StrSplit(text, '\n');
  f.resize(10);
  auto hidden = cli::ParseSizeList("hidden", f[0]);
  flowtape::fuzz::Count(hidden.status());
  if (hidden.ok())
    for (int64_t h : *hidden) FUZZ_EXPECT(h > 0);
  // The list flags, with the ranges the binaries give them.
  const size_t items[4] = {
      1 + static_cast<size_t>(std::count(f[6].begin(), f[6].end(), ',')),
      1 + static_cast<size_t>(std::count(f[7].begin(), f[7].end(), ',')),
      1 + static_cast<size_t>(std::count(f[8].begin(), f[8].end(), ',')),
      1 + static_cast<size_t>(std::count(f[9].begin(), f[9].end(), ','))};
  auto scales =
      cli::ParseDecimalList("scales", f[6], "in (0, 1e6]",
                            [](double k) { return k > 0 && k <= 1e6; });
  auto deltas = cli::ParseDecimalList("deltas", f[7], "> 0",
                                      [](double v) { return v > 0; });
  auto tols =
      cli::ParseDecimalList("sample_tols", f[8], "in [1e-9, 1)",
                            [](double v) { return v >= 1e-9 && v < 1; });
  auto euler = cli::ParseIntegerList("euler_steps", f[9], 1, 100000);
  for (const auto* list : {&scales, &deltas, &tols}) {
    flowtape::fuzz::Count(list->status());
    if (!list->ok()) continue;
    for (double v : **list) FUZZ_EXPECT(std::isfinite(v) && v > 0);
  }
  if (scales.ok()) {
    FUZZ_EXPECT(scales->size() == items[0]);
    for (double v : *scales) FUZZ_EXPECT(v <= 1e6);
  }
  if (deltas.ok()) FUZZ_EXPECT(deltas->size() == items[1]);
  if (tols.ok()) {
    FUZZ_EXPECT(tols->size() == items[2]);
    for (double v : *tols) FUZZ_EXPECT(v >= 1e-9 && v < 1);
  }
  flowtape::fuzz::Count(euler.status());
  if (euler.ok()) {
    FUZZ_EXPECT(euler->size() == items[3]);
    for (int64_t k : *euler) FUZZ_EXPECT(k >= 1 && k <= 100000);
  }
  // An accepted list reads back from its values printed to 17 digits.
  if (deltas.ok()) {
    std::string text;
    for (double v : *deltas)
      absl::StrAppend(&text, text.empty() ? "" : ",",
                      absl::StrFormat("%.17g", v));
    auto again = cli::ParseDecimalList("deltas", text, "> 0",
                                       [](double v) { return v > 0; });
    FUZZ_EXPECT(again.ok() && *again == *deltas);
  }
  // Abseil's own parsers, as absl::ParseCommandLine applies them.
  std::string err;
  int layers = 0;
  int64_t batch = 0, n_train = 0;
  double gb = 0;
  const bool ok_layers = absl::ParseFlag(f[1], &layers, &err);
  const bool ok_batch = absl::ParseFlag(f[2], &batch, &err);
  const bool ok_n = absl::ParseFlag(f[3], &n_train, &err);
  const bool ok_gb = absl::ParseFlag(f[4], &gb, &err);
  absl::Status flags = cli::CheckFlags({
      {"layers", layers, ok_layers && layers > 0, "> 0"},
      {"batch", batch, ok_batch && batch > 0, "> 0"},
      {"n_train", n_train, ok_n && n_train > 0, "> 0"},
      {"max_memory_gb", gb, ok_gb && std::isfinite(gb) && gb >= 0,
       "finite and >= 0"},
  });
  flowtape::fuzz::Count(flags);
  if (!flags.ok() || !hidden.ok()) return 0;
  const double limit = cli::MemoryLimitBytes(gb);
  FUZZ_EXPECT(limit > 0);
  for (const cli::Footprint& fp :
       {cli::FlowFootprint(layers, 2, 0, *hidden, batch, 2.2 * n_train),
        cli::ImageFlowFootprint(f[5], layers, 2, layers, batch, *hidden, 10, 1,
                                28, 28, batch)}) {
    absl::Status s = cli::CheckMemory(fp, "--fuzz", limit);
    flowtape::fuzz::Count(s);
    if (s.ok()) {
      FUZZ_EXPECT(std::isfinite(fp.Bytes()) && fp.Bytes() <= limit);
      FUZZ_EXPECT(fp.parameters >= 0 && fp.activations_per_example >= 0);
    }
  }
  return 0;
}
