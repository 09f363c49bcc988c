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
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 gen(seed);
  std::shuffle(idx.begin(), idx.end(), gen);
  const int64_t n_train = (8 * n) / 10, n_val = n / 10;
  auto take = [&](int64_t from, int64_t count) {
    Tensor out = Tensor::Empty({count, d});
    for (int64_t i = 0; i < count; ++i)
      std::copy(x.data<double>() + idx[from + i] * d,
                x.data<double>() + (idx[from + i] + 1) * d,
                out.mutable_data<double>() + i * d);
    return out;
  };
  return Split{take(0, n_train), take(n_train, n_val),
               take(n_train + n_val, n - n_train - n_val)};
}

}  // namespace flowtape::data
