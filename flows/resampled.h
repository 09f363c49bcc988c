// Resampled base distribution (Stimper, Schoelkopf & Hernandez-Lobato 2022,
// "Resampling Base Distributions of Normalizing Flows", eq. 5): a standard
// normal proposal pi on [D] reweighted by a learned acceptance probability
// a(z) = sigmoid(MLP(z)) in (0, 1), as truncated rejection sampling: draw
// z ~ pi, accept with probability a(z), and accept the T-th proposal
// whatever a says. Its density is
//   p(z) = ((1 - alpha_T) a(z) / Z + alpha_T) pi(z),
//   Z = E_pi[a(z)],  alpha_T = (1 - Z)^(T - 1)
// (the probability that the first T - 1 proposals were all rejected), so
//   log p(z) = log pi(z) + log((1 - alpha_T) a(z) / Z + alpha_T),
// which tends to log a(z) + log pi(z) - log Z as T -> inf (the untruncated
// resampled density) and is pi for T = 1. The truncation keeps sampling
// finite (at most T proposals per sample) and bounds p / pi.
// Z is estimated by Monte Carlo over S proposal samples z_s ~ pi:
// Z^ = (1/S) sum_s a(z_s), differentiable through a, in two ways:
//  - training (LogProbEstimate(x, rng) while a tape records; FlowModel::Score
//    calls it with the training step's rng): S fresh z_s drawn from rng at
//    every call, so each step's Z^ is an unbiased estimate of Z at the
//    current parameters and its gradient an unbiased estimate of dZ (log p
//    is nonlinear in Z^, so the loss gradient is not exactly unbiased;
//    its bias shrinks as 1 / S). A fixed
//    set of z_s would let maximum likelihood lower a(z) at exactly those
//    points (Z^ -> 0 below the true Z, the density overstated). The
//    authors' code (resampled-base-flows; normflows' ResampledGaussian) also
//    draws fresh proposals every step, but takes the value of Z from an
//    exponential moving average of past steps' estimates and only the
//    gradient from the fresh draw; here both come from the same S draws.
//  - evaluation (LogProb, LogProbEstimate without rng or without
//    recording, Normaliser): S z_s kept as a buffer, so log p is a
//    deterministic function of the parameters (saved and reloaded with the
//    model). Training through LogProbEstimate never reads the buffer, so
//    the trained parameters do not depend on it and its Z^ is an unbiased
//    estimate of their Z; Redraw(rng) draws a new buffer.
// The density then integrates to (1 - alpha^) Z / Z^ + alpha^ (alpha^ from
// Z^), 1 up to the estimate's relative error, ~ sd(a) / (Z sqrt(S)).
// The acceptance network's last layer starts at zero: a fresh distribution
// has a = 1/2 everywhere and is exactly the standard normal.
// Sample is exact truncated rejection sampling (it does not use Z^) and is
// not reparametrised (no gradient reaches the samples). dtype: that of the
// parameters (Module::To converts the network and the z_s buffer).
#ifndef FLOWTAPE_FLOWS_RESAMPLED_H_
#define FLOWTAPE_FLOWS_RESAMPLED_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/distribution.h"
#include "nn/layers.h"

namespace flowtape::flows {

struct ResampledOptions {
  int64_t dim = 2;                         // D
  std::vector<int64_t> hidden = {64, 64};  // the acceptance network's widths
  int64_t truncation = 100;                // T
  int64_t normaliser_samples = 4096;       // S
  // InvalidArgument unless dim >= 1, at least one hidden size and all >= 1,
  // truncation >= 1 and 1 <= normaliser_samples <= 2^24.
  absl::Status Validate() const;
};

class ResampledNormal : public Distribution {
 public:
  static absl::StatusOr<std::shared_ptr<ResampledNormal>> Create(
      const ResampledOptions& options, Rng& rng);
  Tensor LogProb(const Tensor& x) const override;  // Z^ from the buffer
  // With rng while a tape records: Z^ from S fresh proposals drawn from
  // *rng (the buffer is left as it is); otherwise LogProb(x).
  Tensor LogProbEstimate(const Tensor& x, Rng* rng) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "resampled_normal"; }

  Tensor Acceptance(const Tensor& z) const;  // a(z) [N] for z [N, D]
  Tensor Normaliser() const;                 // Z^, a scalar
  // New proposal samples z_s for Z^ (written into the buffer in place).
  void Redraw(Rng& rng);
  const ResampledOptions& options() const { return o_; }

 private:
  ResampledNormal(const ResampledOptions& options, Rng& rng);
  Tensor LogProbGiven(const Tensor& x, const Tensor& z) const;  // Z^ = z
  ResampledOptions o_;
  std::shared_ptr<nn::MLP> net_;
  Tensor proposals_;  // buffer [S, D]: the z_s of Z^
  Tensor log_norm_;   // buffer: -D log(2 pi) / 2
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_RESAMPLED_H_
