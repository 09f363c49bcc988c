#include "data/earth.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "data/number.h"
#include "data/read_file.h"

namespace flowtape::data {

void ToUnitVector(double lat_deg, double lon_deg, double* xyz) {
  const double lat = lat_deg * M_PI / 180.0, lon = lon_deg * M_PI / 180.0;
  xyz[0] = std::cos(lat) * std::cos(lon);
  xyz[1] = std::cos(lat) * std::sin(lon);
  xyz[2] = std::sin(lat);
}

namespace {

// A header field: does not start like a number (digit, sign or '.').
bool IsHeaderField(absl::string_view field) {
  field = absl::StripAsciiWhitespace(field);
  if (field.empty()) return false;
  const char c = field[0];
  return !(absl::ascii_isdigit(c) || c == '+' || c == '-' || c == '.');
}

constexpr char kDataDir[] = "data/earth";

}  // namespace

absl::StatusOr<Tensor> ParseEarthCsv(const std::string& text,
                                     const std::string& source) {
  std::vector<double> xyz;
  bool first_record = true;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ',');
    double lat = 0.0, lon = 0.0;
    if (first_record) {  // a header: two fields, neither starts numerically
      first_record = false;
      if (f.size() == 2 && IsHeaderField(f[0]) && IsHeaderField(f[1])) continue;
    }
    if (f.size() != 2)
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line_no, ": expected 'latitude,longitude', got '",
          absl::CHexEscape(line.substr(0, 200)), "'"));
    for (int k = 0; k < 2; ++k)
      if (absl::Status s = ParseDecimal(absl::StripAsciiWhitespace(f[k]),
                                        k == 0 ? &lat : &lon);
          !s.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", line_no, ": ",
                         k == 0 ? "latitude: " : "longitude: ", s.message()));
    if (!(std::abs(lat) <= 90.0) || !(lon >= -180.0 && lon <= 360.0))
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no, ": coordinates out of range (",
                       lat, ", ", lon, ")"));
    xyz.resize(xyz.size() + 3);
    ToUnitVector(lat, lon, xyz.data() + xyz.size() - 3);
  }
  if (xyz.empty())
    return absl::InvalidArgumentError(absl::StrCat(source, ": no data rows"));
  return Tensor::FromVector({static_cast<int64_t>(xyz.size() / 3), 3}, xyz);
}

absl::StatusOr<Tensor> LoadEarthCsv(const std::string& path,
                                    int64_t max_bytes) {
  absl::StatusOr<std::string> text =
      ReadFileMaybeGz(path, max_bytes, "earth catalogue");
  if (absl::IsNotFound(text.status()))
    return absl::NotFoundError(absl::StrCat(
        text.status().message(),
        "; the four catalogues (volcano, earthquake, "
        "flood, fire .csv) ship with flowtape in ",
        kDataDir,
        "/ (sources in its README.md): run `./bazelw run //benchmarks:earth` "
        "in the workspace, or pass --data_dir=DIR"));
  if (!text.ok()) return text.status();
  return ParseEarthCsv(*text, path);
}

std::string DefaultEarthDataDir() {
  std::vector<std::string> roots;
  for (const char* var : {"RUNFILES_DIR", "TEST_SRCDIR"})
    if (const char* d = std::getenv(var); d && *d)
      roots.push_back(absl::StrCat(d, "/flowtape/"));
  // The runfiles tree next to the running binary (bazel-bin/.../earth run
  // by hand from any directory).
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(absl::StrCat(exe.string(), ".runfiles/flowtape/"));
  roots.push_back("");
  if (const char* ws = std::getenv("BUILD_WORKSPACE_DIRECTORY"); ws && *ws)
    roots.push_back(absl::StrCat(ws, "/"));
  for (const std::string& root : roots) {
    const std::string dir = absl::StrCat(root, kDataDir);
    if (std::ifstream(dir + "/volcano.csv").good()) return dir;
  }
  return kDataDir;
}

namespace {

// A uniform draw from [0, range) by Lemire's multiply-and-reject method
// (arXiv:1805.10941) on 64-bit words: the top 64 bits of u * range, u
// redrawn while the low 64 bits fall below 2^64 mod range.
uint64_t UniformBelow(uint64_t range, std::mt19937_64& gen) {
  auto mul = [&](uint64_t u, uint64_t* low) {  // u * range as (high, low)
    const uint64_t u0 = u & 0xffffffffu, u1 = u >> 32;
    const uint64_t r0 = range & 0xffffffffu, r1 = range >> 32;
    const uint64_t p00 = u0 * r0, p01 = u0 * r1, p10 = u1 * r0, p11 = u1 * r1;
    const uint64_t mid =
        (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *low = (mid << 32) | (p00 & 0xffffffffu);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
  };
  uint64_t low;
  uint64_t high = mul(gen(), &low);
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;
    while (low < threshold) high = mul(gen(), &low);
  }
  return high;
}

}  // namespace

std::vector<int64_t> SplitPermutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> idx(std::max<int64_t>(n, 0));
  std::iota(idx.begin(), idx.end(), 0);
  if (n < 2) return idx;
  std::mt19937_64 gen(seed);
  const uint64_t un = static_cast<uint64_t>(n);
  // n < 2^32: two swap positions per draw, from one uniform index below
  // (i + 1)(i + 2); an even n first swaps element 1 alone.
  if (un < (uint64_t{1} << 32)) {
    int64_t i = 1;
    if (n % 2 == 0) std::swap(idx[i++], idx[UniformBelow(2, gen)]);
    for (; i < n; i += 2) {
      const uint64_t b0 = static_cast<uint64_t>(i) + 1, b1 = b0 + 1;
      const uint64_t x = UniformBelow(b0 * b1, gen);
      std::swap(idx[i], idx[x / b1]);
      std::swap(idx[i + 1], idx[x % b1]);
    }
    return idx;
  }
  for (int64_t i = 1; i < n; ++i)
    std::swap(idx[i], idx[UniformBelow(static_cast<uint64_t>(i) + 1, gen)]);
  return idx;
}

absl::StatusOr<Split> RandomSplit(const Tensor& x, uint64_t seed,
                                  const std::string& source) {
  if (x.shape().rank() != 2)
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": points are ", x.shape().ToString(), ", expected [n, d]"));
  const int64_t n = x.dim(0), d = x.dim(1);
  if (n < kMinSplitRows)
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": ", n, " points; the 80/10/10 split needs at least ",
        kMinSplitRows,
        " (8 train, 1 validation, 1 test) so that no part is empty"));
  const std::vector<int64_t> idx = SplitPermutation(n, seed);
  const int64_t n_train = (8 * n) / 10, n_val = n / 10;
  auto take = [&](int64_t from, int64_t count) {
    Tensor out = Tensor::Empty({count, d}, x.dtype());
    VisitDType(x.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* in = x.data<T>();
      T* o = out.mutable_data<T>();
      for (int64_t i = 0; i < count; ++i)
        std::copy(in + idx[from + i] * d, in + (idx[from + i] + 1) * d,
                  o + i * d);
    });
    return out;
  };
  return Split{take(0, n_train), take(n_train, n_val),
               take(n_train + n_val, n - n_train - n_val)};
}

}  // namespace flowtape::data
