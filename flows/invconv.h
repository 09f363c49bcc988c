// Invertible 1x1 convolution (Kingma & Dhariwal 2018): a learned C x C matrix
// W applied to the channel vector of every pixel.
//
//   Forward  z[n,:,h,w] = W x[n,:,h,w],     logdet = H * W_img * log|det W|
//   Inverse  x[n,:,h,w] = W^-1 z[n,:,h,w],  logdet = -H * W_img * log|det W|
// Inputs are images [N, C, H, W] or vectors [N, C] (H = W_img = 1, a linear
// flow z = W x).
//
// Parametrisations:
//   kLu (default): W = P L (U + diag(sign_s * exp(log_s))) with P a fixed
//     permutation, L unit lower triangular, U strictly upper triangular and
//     sign_s fixed, so log|det W| = sum log_s (O(C)), and W^-1 comes from
//     two triangular solves. P and sign_s depend on the random start, so
//     they are buffers ("perm", "sign_s") that checkpoints save and restore.
//   kFull: W unconstrained, log|det W| from Slogdet and W^-1 from Inverse
//     (O(C^3) each, differentiable).
// Both start at a random rotation (QR of a Gaussian matrix), as in Glow.
// Validate() checks that the current W is finite and invertible (after
// loading a checkpoint, or training); Create(W) builds a kFull layer from a
// user's matrix and validates it. The triangular masks of kLu are buffers
// too, so Module::To converts them with the parameters.
#ifndef FLOWTAPE_FLOWS_INVCONV_H_
#define FLOWTAPE_FLOWS_INVCONV_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

enum class InvConvParam { kLu, kFull };

class InvConv1x1 : public Flow {
 public:
  // InvalidArgument unless channels >= 1.
  static absl::StatusOr<std::shared_ptr<InvConv1x1>> Create(
      int64_t channels, Rng& rng, InvConvParam param = InvConvParam::kLu);
  // kFull with the given W [C, C]; InvalidArgument unless Validate() passes.
  static absl::StatusOr<std::shared_ptr<InvConv1x1>> Create(const Tensor& w);
  // InvalidArgument if an entry of W is not finite or W is singular in its
  // dtype: sigma_min <= r sigma_max (its singular values), r = 1e-12 in
  // float64 and 1e-5 in float32 (about 4500 and 84 machine epsilons).
  absl::Status Validate() const;
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override {
    return param_ == InvConvParam::kLu ? "invconv_lu" : "invconv";
  }

  // The current W [C, C] and log|det W| (scalar), differentiable.
  Tensor Weight() const;
  Tensor LogAbsDetWeight() const;

 private:
  InvConv1x1(int64_t channels, Rng& rng, InvConvParam param);
  Tensor InverseWeight() const;
  // kLu: L (unit lower) and U' = U + diag(sign_s exp(log_s)).
  Tensor Lower() const;
  Tensor Upper() const;
  // Applies the C x C matrix m to every pixel's channel vector.
  Tensor Mix(const Tensor& m, const Tensor& x) const;

  int64_t c_;
  InvConvParam param_;
  Tensor w_;                      // kFull
  Tensor perm_, sign_s_;          // kLu buffers
  Tensor l_mask_, u_mask_;        // kLu buffers (fixed by C)
  Tensor lower_, upper_, log_s_;  // kLu parameters
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_INVCONV_H_
