// SpectralLinear: a linear layer whose weight is spectrally normalised
// (Miyato et al. 2018), the building block of i-ResNets / Residual Flows.
//
//   y = x W_sn + b,   x [N, in], W [in, out], b [out]
//   W_sn = W * min(1, c / sigma),   sigma ~ sigma_max(W) = u' W v
// so that the layer is Lipschitz with constant <= c (in the 2-norm).
// (u [in], v [out]) are unit vectors kept as module buffers ("u", "v": saved
// and restored by checkpoints, never trained) and refined in place by power
// iteration on the values:
//   v <- W' u / |W' u|,   u <- W v / |W v|.
// The gradient treats u, v as constants (Miyato): d sigma / dW = u v', which
// is the exact derivative of sigma_max(W) once (u, v) are its singular
// vectors. u' W v <= sigma_max(W) always, so the bound holds exactly only at
// convergence (kConverged); a few iterations per step (kTrain) track a
// slowly changing W.
// Power iteration runs in double on the weight's values whatever its dtype
// (float32 weights are exact doubles), and stores (u, v) rounded to it.
// "To convergence" iterates until no entry of u changes by more than 1e-15
// (or the change stalls at the rounding floor), at most 20000 steps. The
// vectors' error shrinks like (sigma_2 / sigma_1)^(2k) (sigma's like its
// square), so sigma and u v' are exact to rounding unless the top singular
// value is nearly degenerate (sigma_2 / sigma_1 > ~0.999): then the cap
// stops the iteration and u v' keeps an error ~ (sigma_2 / sigma_1)^40000.
//
// SpectralMode:
//   kTrain     calls that record on the tape (grad enabled) first run
//              `iterations` power steps and store (u, v); calls under
//              NoGradScope (evaluation, sampling) use the stored vectors.
//   kFrozen    always the stored (u, v): a fixed, deterministic function.
//   kConverged power iteration from the stored u to convergence on every
//              call (nothing stored): W_sn is a deterministic function of W
//              with the true sigma_max and its first derivative (exact to
//              rounding, see above; tests, exact evaluation; O(in*out) per
//              iteration, ~8 / -log10(sigma_2 / sigma_1) iterations).
#ifndef FLOWTAPE_FLOWS_SPECTRAL_NORM_H_
#define FLOWTAPE_FLOWS_SPECTRAL_NORM_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::flows {

enum class SpectralMode { kTrain, kFrozen, kConverged };

class SpectralLinear : public nn::Module {
 public:
  // W Xavier-uniform, b zero, u random unit; c in (0, inf) is the bound.
  // InvalidArgument unless in, out >= 1 and c is positive and finite.
  static absl::StatusOr<std::shared_ptr<SpectralLinear>> Create(int64_t in,
                                                                int64_t out,
                                                                double c,
                                                                Rng& rng);

  // W_sn for this call (see SpectralMode; kTrain may update u, v).
  Tensor NormalizedWeight(SpectralMode mode, int iterations) const;
  Tensor operator()(const Tensor& x, SpectralMode mode, int iterations) const;

  const Tensor& weight() const { return w_; }
  const Tensor& bias() const { return b_; }
  double bound() const { return c_; }
  // sigma_max(W) by power iteration to convergence (values only).
  double ConvergedSigma() const;
  // Runs the stored (u, v) to convergence for the current W (e.g. after
  // changing W by hand; a checkpoint restores (u, v) with W).
  void Refresh() const;

 private:
  SpectralLinear(int64_t in, int64_t out, double c, Rng& rng);
  // Runs power iteration on (u, v) in place; `iterations` < 0: to
  // convergence. Returns u' W v.
  double PowerIterate(std::vector<double>& u, std::vector<double>& v,
                      int iterations) const;

  Tensor w_, b_;
  Tensor u_, v_;  // buffers [in] and [out], updated in place (shared storage)
  double c_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SPECTRAL_NORM_H_
