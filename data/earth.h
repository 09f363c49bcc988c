// Earth-science event catalogues (data/earth/*.csv, shipped with
// the repository; sources and licences in its README.md) as points on the
// unit sphere S^2, and the benchmark's random 80/10/10 split.
//
// File format: lines starting with '#' are comments; the first record may be
// a header: two fields, neither of which starts like a number (a digit,
// sign or '.'; e.g. "Latitude,Longitude", "lat,long"); every other record
// is "latitude,longitude" in degrees, each a strict decimal number
// (data/number.h: no hex, inf, nan, overflow or underflow) with
// |lat| <= 90 and -180 <= lon <= 360. A point is
//   x = (cos(lat) cos(lon), cos(lat) sin(lon), sin(lat)).
// Errors name the file and line (InvalidArgument): unparsable or
// out-of-range coordinates, wrong field counts (also on the first record),
// no data; a missing file is NotFound and says where the data lives.
// Files: regular files only (gzip accepted), at most max_bytes (default
// kEarthMaxBytes = 16 MiB; the largest shipped catalogue is 180 KB) on disk
// and decompressed; otherwise InvalidArgument naming the path.
#ifndef FLOWTAPE_DATA_EARTH_H_
#define FLOWTAPE_DATA_EARTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

// [N, 3] unit vectors.
absl::StatusOr<Tensor> ParseEarthCsv(const std::string& text,
                                     const std::string& source);
inline constexpr int64_t kEarthMaxBytes = int64_t{16} << 20;
absl::StatusOr<Tensor> LoadEarthCsv(const std::string& path,
                                    int64_t max_bytes = kEarthMaxBytes);

// The directory holding volcano.csv etc.: the first of
// $RUNFILES_DIR/flowtape/, $TEST_SRCDIR/flowtape/, <this binary>.runfiles/
// flowtape/, the current directory (bazel run starts in the runfiles tree)
// and $BUILD_WORKSPACE_DIRECTORY/, each followed by data/earth,
// that has volcano.csv; else the relative "data/earth".
std::string DefaultEarthDataDir();

// Degrees (lat, lon) <-> unit vector.
void ToUnitVector(double lat_deg, double lon_deg, double* xyz);

// The split's permutation of 0..n-1: Fisher-Yates driven by
// std::mt19937_64(seed), each position drawn by Lemire's multiply-and-reject
// (arXiv:1805.10941) and, for n < 2^32, two positions per draw (an index
// below (i + 1)(i + 2) for elements i and i + 1, after a lone swap of
// element 1 when n is even). Written out rather than std::shuffle, whose
// algorithm the standard leaves open: these are the permutations of
// libstdc++ 11-13's std::shuffle with that engine (the published earth
// splits), now the same under any standard library.
std::vector<int64_t> SplitPermutation(int64_t n, uint64_t seed);

struct Split {
  Tensor train, val, test;
};
// SplitPermutation(n, seed), then the first floor(0.8 n) rows train, the
// next floor(0.1 n) validation, the rest test. Every part must be nonempty,
// so n >= kMinSplitRows = 10 (8 / 1 / 1); fewer rows (or x not [n, d]) is
// InvalidArgument naming `source` and the minimum. The parts keep x's dtype.
inline constexpr int64_t kMinSplitRows = 10;
absl::StatusOr<Split> RandomSplit(const Tensor& x, uint64_t seed,
                                  const std::string& source = "catalogue");

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_EARTH_H_
