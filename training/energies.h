// The 2-D test energies of Rezende & Mohamed 2015 (Variational Inference
// with Normalizing Flows, Table 1): unnormalised densities p(z) ~ exp(-U(z)),
// by name (toy2d --energy); computed by flows::RezendeEnergy (energies.h).
//
//   w1(z) = sin(2 pi z1 / 4)
//   w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2)
//   w3(z) = 3 sigmoid((z1 - 1) / 0.3)
//   U1(z) = ((|z| - 2) / 0.4)^2 / 2
//           - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
//   U2(z) = ((z2 - w1) / 0.4)^2 / 2
//   U3(z) = -log(exp(-((z2 - w1) / 0.35)^2 / 2)
//                + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
//   U4(z) = -log(exp(-((z2 - w1) / 0.4)^2 / 2)
//                + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))
// (The log-sum-exps are computed stably.) z is [N, 2]; U returns [N] and is
// differentiable in z. U2-U4 do not decay along z1 (improper densities); as
// in the paper's figures they are considered on the box [-4, 4]^2, which is
// where LogNormalizer integrates.
#ifndef FLOWTAPE_TRAINING_ENERGIES_H_
#define FLOWTAPE_TRAINING_ENERGIES_H_

#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::training {

enum class Energy { kU1, kU2, kU3, kU4 };

absl::StatusOr<Energy> ParseEnergy(const std::string& name);  // "u1".."u4"
std::string EnergyName(Energy e);

// U(z) per row, [N].
Tensor PotentialEnergy(Energy e, const Tensor& z);

// log Z = log int_{[-lim, lim]^2} exp(-U(z)) dz by the midpoint rule on a
// grid x grid lattice (U1 is negligible outside |z| <= 4).
double LogNormalizer(Energy e, double lim = 4.0, int grid = 400);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_ENERGIES_H_
