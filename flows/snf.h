// A stochastic normalizing flow for a target exp(-u) (Wu, Koehler & Noe
// 2020): RealNVP blocks (two affine couplings each, the second flipped)
// with a stochastic layer (flows/stochastic.h) after each block, in the
// generative direction
//   z -> block_1 -> S_1 -> block_2 -> S_2 -> ... -> block_K -> S_K -> x
// where S_k samples the interpolated energy
//   u_k = (1 - k/K) |x|^2 / 2 + (k/K) u,   k = 1..K  (S_K samples u itself)
// as in the paper's code (RNVP blocks with Metropolis layers between them).
// With kind = kNone the stochastic layers are left out: the same
// deterministic RealNVP, for comparison. The result is a Sequential in
// flowtape's order (its Forward normalizes: S_K first).
#ifndef FLOWTAPE_FLOWS_SNF_H_
#define FLOWTAPE_FLOWS_SNF_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/rng.h"
#include "flows/energies.h"
#include "flows/sequential.h"

namespace flowtape::flows {

enum class StochasticKind { kNone, kMetropolis, kLangevin, kMala };

struct SnfOptions {
  EnergyPtr target;  // dim >= 2 (couplings split the vector)
  int64_t blocks = 3;
  std::vector<int64_t> hidden = {64, 64};
  StochasticKind kind = StochasticKind::kMetropolis;
  int64_t mcmc_steps = 10;      // kernel steps per stochastic layer
  double proposal_scale = 0.3;  // Metropolis
  double step_size = 0.01;      // Langevin / MALA
  // Langevin / MALA: each layer learns its own eps = exp(log_step_size),
  // starting at step_size (flows/stochastic.h).
  bool learn_step_size = false;
  // InvalidArgument unless target is set with dim >= 2, blocks >= 1, the
  // hidden sizes >= 1 and the stochastic layers' options are valid.
  absl::Status Validate() const;
};

absl::StatusOr<std::shared_ptr<Sequential>> MakeSnf(const SnfOptions& options,
                                                    Rng& rng);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SNF_H_
