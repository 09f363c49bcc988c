// Multi-scale Glow (Kingma & Dhariwal 2018; multi-scale architecture of Dinh
// et al. 2017) for images [N, C, H, W], optionally class-conditional.
//
// Level l = 0..L-1 (x_0 = x):
//   h = Squeeze(x_l)                         [N, 4C_l, H_l/2, W_l/2]
//   h = K steps of ActNorm -> InvConv1x1 -> affine coupling (coupling.h:
//       channels split in halves, kAffineSigmoid, ConvNet with `hidden`
//       channels {hidden, hidden}, the context as constant channels)
//   l < L-1: factor out, h = [h_1 | h_2] by channels (h_1 the first half):
//     h_2 is scored by a learned conditional Gaussian prior
//       (mu, log_sigma) = Conv3x3(h_1) (+ Linear(context) per channel),
//       started at zero;  eps_l = (h_2 - mu) * exp(-log_sigma),
//       logdet += -sum log_sigma
//     and x_{l+1} = h_1;
//   l = L-1: eps_L = h (with a context, also through a per-channel prior
//     (mu, log_sigma) = Linear(context), started at zero).
// Forward returns z with the shape of x, [N, C, H, W], whose flat layout
// (per sample) is concat(flatten(eps_0), ..., flatten(eps_L)); z is standard
// normal under the model: the learned priors are affine flows to N(0, I), so
// log p(x) = log N(z; 0, I) + logdet (flow.h conventions). Inverse maps such
// a z ([N, C, H, W], or flat [N, C*H*W]) back to images, top level first.
// Every step's log-det is exact and analytic. ActNorm layers initialise
// from data in an initialisation pass (flow.h, InitializeFromData).
#ifndef FLOWTAPE_FLOWS_GLOW_H_
#define FLOWTAPE_FLOWS_GLOW_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "flows/invconv.h"
#include "nn/conv.h"
#include "nn/layers.h"

namespace flowtape::flows {

struct GlowOptions {
  int64_t channels = 1, height = 28, width = 28;
  int levels = 2;           // L
  int depth = 4;            // K steps per level
  int64_t hidden = 64;      // coupling net channels
  int64_t context_dim = 0;  // 0 = unconditional
  InvConvParam invconv = InvConvParam::kLu;
  // OK iff H and W are positive multiples of 2^L (so every level's squeeze
  // sees an even image of side >= 2), L, K, hidden, channels >= 1 (L <= 20)
  // and context_dim >= 0; else InvalidArgument.
  absl::Status Validate() const;
};

class Glow : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<Glow>> Create(
      const GlowOptions& options, Rng& rng);
  // x [N, C, H, W] -> z [N, C, H, W] (layout above).
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  // z [N, C, H, W] or [N, C*H*W] -> x [N, C, H, W].
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "glow"; }
  const GlowOptions& options() const { return options_; }

 private:
  Glow(const GlowOptions& options, Rng& rng);
  struct Level {
    std::shared_ptr<Flow> squeeze;
    std::vector<std::shared_ptr<Flow>> steps;
    std::shared_ptr<nn::Conv2d> prior;    // split prior (not the last level)
    std::shared_ptr<nn::Linear> context;  // context -> prior bias
    int64_t c, h, w;                      // after squeeze
    int64_t out_channels;                 // channels of eps_l
  };
  // (mu, log_sigma) of the factored-out part given the kept part h1
  // (undefined h1 at the top level: context only).
  void Prior(const Level& level, const Tensor& h1, const Tensor& context,
             int64_t n, Tensor* mu, Tensor* log_sigma) const;

  GlowOptions options_;
  std::vector<Level> levels_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_GLOW_H_
