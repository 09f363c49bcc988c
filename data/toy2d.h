// Toy 2-D densities for flow experiments, with the constants of FFJORD's
// lib/toy_data.py (Grathwohl et al. 2019), generated with flowtape's Rng.
//
//   swissroll:    t = 1.5 pi (1 + 2u), (t cos t, t sin t) + N(0, 1), / 5
//                 (sklearn make_swiss_roll, noise 1.0, columns x and z)
//   circles:      two circles of radius 1 and 0.5 (n/2 points each, even
//                 angles) + N(0, 0.08^2), * 3        (make_circles)
//   rings:        four circles of radius 1, .75, .5, .25 (even angles),
//                 * 3, + N(0, 0.08^2)
//   moons:        make_moons (noise 0.1), * 2 + (-1, -0.2)
//   8gaussians:   centres 4 * (cos k pi/4, sin k pi/4), std 0.5, / 1.414
//   pinwheel:     5 arms, radial std 0.3, tangential std 0.1, rate 0.25, * 2
//   2spirals:     n = sqrt(u) * 3 pi, (-n cos n, n sin n) + U[0,.5)^2,
//   mirrored,
//                 / 3, + N(0, 0.1^2)
//   checkerboard: x1 ~ U[-2, 2), x2 ~ U[0,1) - 2 b + (floor(x1) mod 2), * 2
// Output: [n, 2] constant tensor, rows in random order.
#ifndef FLOWTAPE_DATA_TOY2D_H_
#define FLOWTAPE_DATA_TOY2D_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

// Names accepted by SampleToy2d, in a fixed order.
const std::vector<std::string>& Toy2dNames();

// n samples of the named toy density; InvalidArgument for an unknown name or
// n <= 0.
absl::StatusOr<Tensor> SampleToy2d(const std::string& name, int64_t n,
                                   Rng& rng);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_TOY2D_H_
