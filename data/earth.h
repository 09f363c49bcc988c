// Earth-science event catalogues (data/earth/*.csv, shipped with
// the repository; sources and licences in its README.md) as points on the
// unit sphere S^2, and the benchmark's random 80/10/10 split.
//
// File format: lines starting with '#' are comments; the first record may be
// a header: two fields, neither of them a number (e.g. "Latitude,Longitude",
// "lat,long"); every other record is "latitude,longitude" in degrees. A
// point is
//   x = (cos(lat) cos(lon), cos(lat) sin(lon), sin(lat)).
// Errors name the file and line (InvalidArgument): unparsable or
// out-of-range coordinates, wrong field counts (also on the first record),
// no data; a missing file is NotFound and says where the data lives.
#ifndef FLOWTAPE_DATA_EARTH_H_
#define FLOWTAPE_DATA_EARTH_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

// [N, 3] unit vectors.
absl::StatusOr<Tensor> ParseEarthCsv(const std::string& text,
                                     const std::string& source);
absl::StatusOr<Tensor> LoadEarthCsv(const std::string& path);

// The directory holding volcano.csv etc.: the first of
// $RUNFILES_DIR/flowtape/, $TEST_SRCDIR/flowtape/, <this binary>.runfiles/
// flowtape/, the current directory (bazel run starts in the runfiles tree)
// and $BUILD_WORKSPACE_DIRECTORY/, each followed by data/earth,
// that has volcano.csv; else the relative "data/earth".
std::string DefaultEarthDataDir();

// Degrees (lat, lon) <-> unit vector.
void ToUnitVector(double lat_deg, double lon_deg, double* xyz);

struct Split {
  Tensor train, val, test;
};
// Random permutation (seed), then the first 80% train, next 10% validation,
// the rest test.
Split RandomSplit(const Tensor& x, uint64_t seed);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_EARTH_H_
