#include "benchmarks/earth_data.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace flowtape::earth {

void ToUnitVector(double lat_deg, double lon_deg, double* xyz) {
  const double lat = lat_deg * M_PI / 180.0, lon = lon_deg * M_PI / 180.0;
  xyz[0] = std::cos(lat) * std::cos(lon);
  xyz[1] = std::cos(lat) * std::sin(lon);
  xyz[2] = std::sin(lat);
}

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
    double lat, lon;
    const bool numeric =
        f.size() == 2 &&
        absl::SimpleAtod(absl::StripAsciiWhitespace(f[0]), &lat) &&
        absl::SimpleAtod(absl::StripAsciiWhitespace(f[1]), &lon);
    if (!numeric && first_record) {  // header
      first_record = false;
      continue;
    }
    first_record = false;
    if (!numeric)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":", line_no,
                       ": expected 'latitude,longitude', got '", line, "'"));
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

absl::StatusOr<Tensor> LoadEarthCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseEarthCsv(ss.str(), path);
}

Split RandomSplit(const Tensor& x, uint64_t seed) {
  const int64_t n = x.dim(0), d = x.dim(1);
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 gen(seed);
  std::shuffle(idx.begin(), idx.end(), gen);
  const int64_t n_train = (8 * n) / 10, n_val = n / 10;
  auto take = [&](int64_t from, int64_t count) {
    Tensor out = Tensor::Empty({count, d});
    for (int64_t i = 0; i < count; ++i)
      std::copy(x.data() + idx[from + i] * d,
                x.data() + (idx[from + i] + 1) * d, out.mutable_data() + i * d);
    return out;
  };
  return {take(0, n_train), take(n_train, n_val),
          take(n_train + n_val, n - n_train - n_val)};
}

}  // namespace flowtape::earth
