// ActNorm (Kingma & Dhariwal 2018): a per-channel affine map with
// data-dependent initialisation.
//
//   Forward  z[n,c,h,w] = x[n,c,h,w] * exp(log_scale[c]) + bias[c]
//            logdet = H * W * sum_c log_scale[c]    (log|s| with s =
//            e^log_scale)
//   Inverse  x = (z - bias) * exp(-log_scale),  logdet = -H * W * sum log_scale
// Inputs are images [N, C, H, W] or vectors [N, C] (H = W = 1).
//
// Initialisation: parameters start at the identity (all zero); the first
// Forward call (or Initialize) sets them from that batch so that z has zero
// mean and unit variance per channel: log_scale = -log(std + 1e-6),
// bias = -mean e^log_scale. The flag is the scalar buffer "initialized" (1 or
// 0), so a checkpoint restores it with the parameters. Forward initialises
// only while the flag is 0 and the parameters are still all zero (parameters
// set by hand are kept). Inverse never initialises (an untrained model
// samples through the identity).
#ifndef FLOWTAPE_FLOWS_ACTNORM_H_
#define FLOWTAPE_FLOWS_ACTNORM_H_

#include <cstdint>
#include <string>

#include "flows/flow.h"

namespace flowtape::flows {

class ActNorm : public Flow {
 public:
  explicit ActNorm(int64_t channels);
  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  std::string name() const override { return "actnorm"; }

  // Sets the parameters from the batch x (values only) and marks the layer
  // initialised.
  void Initialize(const Tensor& x) const;
  bool initialized() const { return initialized_.item() != 0; }
  // Marks the layer initialised (or not) without touching the parameters.
  void set_initialized(bool on) const;
  const Tensor& log_scale() const { return log_scale_; }
  const Tensor& bias() const { return bias_; }

 private:
  // Parameters reshaped to broadcast against x, and H*W.
  Tensor View(const Tensor& p, const Tensor& x) const;
  int64_t channels_;
  Tensor log_scale_, bias_;
  Tensor initialized_;  // buffer, scalar 0 / 1 (shared storage)
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_ACTNORM_H_
