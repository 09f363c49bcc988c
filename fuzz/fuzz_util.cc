#include "fuzz/fuzz_util.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

namespace flowtape::fuzz {
namespace {

struct Stats {
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;
};

void PrintStats();

Stats& GetStats() {
  static Stats* stats = [] {
    std::atexit(PrintStats);
    return new Stats;
  }();
  return *stats;
}

void PrintStats() {
  if (std::getenv("FLOWTAPE_FUZZ_STATS") == nullptr) return;
  const Stats& s = GetStats();
  int64_t total = s.ok;
  for (const auto& [code, n] : s.errors) total += n;
  std::fprintf(stderr, "flowtape fuzz stats: %lld inputs, %lld accepted",
               static_cast<long long>(total), static_cast<long long>(s.ok));
  for (const auto& [code, n] : s.errors)
    std::fprintf(stderr, ", %lld %s", static_cast<long long>(n), code.c_str());
  std::fprintf(stderr, "\n");
}

}  // namespace

std::string WriteScratch(const uint8_t* data, size_t size,
                         const std::string& suffix) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir && *dir ? dir : "/tmp") +
                           "/flowtape_fuzz_" + std::to_string(::getpid()) +
                           suffix;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), size);
  return path;
}

std::string Gzip(const std::string& bytes) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, bytes.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = bytes.size();
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = out.size();
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void Count(const absl::Status& status) {
  Stats& s = GetStats();
  if (status.ok())
    ++s.ok;
  else
    ++s.errors[absl::StatusCodeToString(status.code())];
}

void SilentWrong(const char* file, int line, const char* what) {
  std::fprintf(stderr, "flowtape fuzz: SILENT WRONG at %s:%d: %s\n", file, line,
               what);
  std::abort();
}

}  // namespace flowtape::fuzz
