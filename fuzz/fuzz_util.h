// Shared pieces of the fuzz targets (fuzz/*_fuzzer.cc).
//
// Each target defines LLVMFuzzerTestOneInput(data, size), which must never
// crash, hang or allocate without bound on any input; a bad input must come
// back as a Status. Targets also check what a successful parse returned
// (FUZZ_EXPECT): a violation is a silent wrong answer and aborts with
// "flowtape fuzz: SILENT WRONG ...", so libFuzzer and the replay driver
// report it like a crash.
//
// Outcome counts (inputs accepted / refused with a Status, by code) are
// printed at exit when FLOWTAPE_FUZZ_STATS is set, for the robustness
// table in fuzz/README.md.
#ifndef FLOWTAPE_FUZZ_FUZZ_UTIL_H_
#define FLOWTAPE_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace flowtape::fuzz {

// Writes bytes to this process's scratch file with the given suffix (in
// $TEST_TMPDIR or /tmp) and returns its path; the file is rewritten on
// every call.
std::string WriteScratch(const uint8_t* data, size_t size,
                         const std::string& suffix);
// gzip-compressed bytes (for the ".gz" paths of the loaders).
std::string Gzip(const std::string& bytes);

// Records an outcome for the statistics.
void Count(const absl::Status& status);

[[noreturn]] void SilentWrong(const char* file, int line, const char* what);

}  // namespace flowtape::fuzz

#define FUZZ_EXPECT(cond)                                                  \
  do {                                                                     \
    if (!(cond)) ::flowtape::fuzz::SilentWrong(__FILE__, __LINE__, #cond); \
  } while (0)

#endif  // FLOWTAPE_FUZZ_FUZZ_UTIL_H_
