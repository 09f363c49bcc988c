// ActNorm (Kingma & Dhariwal 2018): a per-channel affine map with
// data-dependent initialisation.
//
//   Forward  z[n,c,h,w] = x[n,c,h,w] * exp(log_scale[c]) + bias[c]
//            logdet = H * W * sum_c log_scale[c]
//   Inverse  x = (z - bias) * exp(-log_scale),  logdet = -H * W * sum log_scale
// Inputs are images [N, C, H, W] or vectors [N, C] (H = W = 1).
//
// Initialisation is explicit (flow.h, InitializeFromData): parameters start
// at the identity (all zero), and only inside an initialisation pass does a
// layer whose "initialized" flag is 0 set them from the batch that reaches
// it, so that z has zero mean and unit variance per channel:
//   log_scale = -log(std + 1e-6),  bias = -mean e^log_scale
// and set the flag (a layer whose parameters are no longer all zero, e.g.
// set by hand, keeps them and only sets the flag). The flag is the scalar
// buffer "initialized" (1 or 0), so a checkpoint restores it.
// The rule: Forward and Inverse never write anything outside an
// initialisation pass, so threads may evaluate a shared model concurrently;
// the pass itself writes, so run it from one thread before the model is
// shared (training loops run it on their first batch). An uninitialised
// layer evaluated outside the pass is the affine map of its current
// parameters (the identity at the start).
#ifndef FLOWTAPE_FLOWS_ACTNORM_H_
#define FLOWTAPE_FLOWS_ACTNORM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class ActNorm : public Flow {
 public:
  // InvalidArgument unless channels >= 1.
  static absl::StatusOr<std::shared_ptr<ActNorm>> Create(int64_t channels);
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "actnorm"; }

  bool initialized() const { return initialized_.item() != 0; }
  const Tensor& log_scale() const { return log_scale_; }
  const Tensor& bias() const { return bias_; }

 private:
  explicit ActNorm(int64_t channels);
  // Sets the parameters from the batch x (unless set by hand) and the flag.
  void Initialize(const Tensor& x) const;
  // Parameters reshaped to broadcast against x.
  Tensor View(const Tensor& p, const Tensor& x) const;
  int64_t channels_;
  Tensor log_scale_, bias_;
  Tensor initialized_;  // buffer, scalar 0 / 1 (shared storage)
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_ACTNORM_H_
