// Importance-weighted estimates of the log-normaliser log Z of an
// unnormalised target p~(x) = exp(-u(x)) from a flow's samples.
//
// With x_i = flow.Inverse(z_i), z_i ~ base, and log q_i the model's
// SampleWithLogProb log_prob (for a stochastic flow, flows/stochastic.h:
// log p0(z) - sum of the path log-weights dS, a path quantity), the log
// weights are
//   log w_i = log p~(x_i) - log q_i,          E[w] = Z
// (for stochastic layers by the Crooks / Jarzynski identity, without
// marginalising their noise). Over n samples:
//   log Z^   = log( (1/n) sum_i w_i )          (consistent; E[log Z^] <= log Z)
//   stderr   = sd(w) / (sqrt(n) mean(w))       (delta method, in log units)
//   F        = mean_i(-log w_i) >= -log Z      (the reverse-KL objective;
//              F + log Z = KL(q || p), or the path KL for stochastic flows)
//   ESS      = (sum w)^2 / sum w^2,  ess_fraction = ESS / n.
// log w = -inf (p~ = 0) is a zero weight; NaN or +inf is an error.
#ifndef FLOWTAPE_TRAINING_IMPORTANCE_H_
#define FLOWTAPE_TRAINING_IMPORTANCE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/rng.h"
#include "flows/flow_model.h"
#include "training/reverse_kl.h"

namespace flowtape::training {

struct ImportanceEstimate {
  int64_t n = 0;
  double log_z = 0;
  double log_z_stderr = 0;
  double free_energy = 0;
  double ess = 0;
  double ess_fraction = 0;
};

// The estimates from given log weights. InvalidArgument when empty, when any
// is NaN or +inf, or when every weight is zero.
absl::StatusOr<ImportanceEstimate> ImportanceFromLogWeights(
    const std::vector<double>& log_w);

// Draws n samples from `model` (batches of `batch`, recording off) and
// returns the estimates. InvalidArgument for n or batch <= 0 and as above.
absl::StatusOr<ImportanceEstimate> EstimateLogNormalizer(
    const flows::FlowModel& model, const LogDensityFn& log_p, int64_t n,
    Rng& rng, int64_t batch = 4096);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_IMPORTANCE_H_
