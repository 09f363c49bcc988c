// Earth-science event catalogues (../shared/data/earth/*.csv) as points on
// the unit sphere S^2, and the benchmark's random 80/10/10 split.
//
// File format: lines starting with '#' are comments; an optional header line
// (any non-numeric first record, e.g. "Latitude,Longitude", "lat,long");
// then "latitude,longitude" in degrees per line. A point is
//   x = (cos(lat) cos(lon), cos(lat) sin(lon), sin(lat)).
// Errors (InvalidArgument / NotFound) name the file and line: unparsable or
// out-of-range coordinates, wrong field counts, no data.
#ifndef FLOWTAPE_BENCHMARKS_EARTH_DATA_H_
#define FLOWTAPE_BENCHMARKS_EARTH_DATA_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::earth {

// [N, 3] unit vectors.
absl::StatusOr<Tensor> ParseEarthCsv(const std::string& text,
                                     const std::string& source);
absl::StatusOr<Tensor> LoadEarthCsv(const std::string& path);

// Degrees (lat, lon) <-> unit vector.
void ToUnitVector(double lat_deg, double lon_deg, double* xyz);

struct Split {
  Tensor train, val, test;
};
// Random permutation (seed), then the first 80% train, next 10% validation,
// the rest test.
Split RandomSplit(const Tensor& x, uint64_t seed);

}  // namespace flowtape::earth

#endif  // FLOWTAPE_BENCHMARKS_EARTH_DATA_H_
