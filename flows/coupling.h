// Coupling layers (NICE, Dinh et al. 2014; RealNVP, Dinh et al. 2017; Glow,
// Kingma & Dhariwal 2018; neural spline couplings, Durkan et al. 2019), on
// vectors [N, D] and images [N, C, H, W].
//
// The entries split into an identity part a and a transformed part b. A
// conditioner net sees x_a (and the context c) and gives the parameters of
// an elementwise bijection tau (elementwise.h) of x_b:
//   theta = net([x_a, c]),   z_a = x_a,   z_b = tau(x_b; theta)
//   Forward logdet = sum_b log|tau'(x_b)|      (data -> base, flow.h)
//   Inverse: x_b = tau^-1(z_b; theta),  logdet = -sum_b log|tau'(x_b)|
// Additive (NICE), affine (RealNVP, Glow) and spline couplings differ only in
// tau (CouplingOptions::transform).
// A tau with a numeric inverse (the monotone maps of elementwise.h) reports
// a failed inverse in FlowResult::status.
//
// Splits (CouplingOptions::mask; `flip` swaps the two parts):
//   kHalf          along axis 1 (features, or image channels): the first
//                  ceil(n/2) indices pass through
//   kParity        along axis 1: the even indices pass through
//   kCheckerboard  images: pixels with (h + w) even pass through, in every
//                  channel; the net sees x with the other pixels zeroed and
//                  parametrises tau at every pixel (only b's are used)
// Conditioners (conditioner.h): vectors MlpNet(|a| + K, hidden, |b| P);
// images ConvNet(C_a + K, hidden, C_b P) with the context as K constant
// channels (C_a = C_b = C for kCheckerboard). The net's last layer starts at
// zero, so a fresh coupling is tau at theta = 0 (the identity, except
// kAffineSigmoid). Output layout: dimension-major, entry k's P parameters
// are consecutive (vectors: columns k P .. k P + P - 1; images: channels
// c P .. c P + P - 1 at each pixel).
// float32 or float64: the layer computes in its parameters' dtype (Module::To).
#ifndef FLOWTAPE_FLOWS_COUPLING_H_
#define FLOWTAPE_FLOWS_COUPLING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/conditioner.h"
#include "flows/elementwise.h"
#include "flows/flow.h"
#include "nn/layers.h"

namespace flowtape::flows {

enum class CouplingMask { kHalf, kParity, kCheckerboard };

struct CouplingOptions {
  Shape event = Shape{2};  // [D] or [C, H, W]
  CouplingMask mask = CouplingMask::kHalf;
  bool flip = false;
  std::vector<int64_t> hidden = {64, 64};  // MLP widths / conv channels
  nn::Activation activation = nn::Activation::kRelu;
  int64_t context_dim = 0;  // 0 = unconditional
  ElementwiseOptions transform;
  // InvalidArgument unless the event is [D] or [C, H, W] with positive
  // sizes, both parts are non-empty (kHalf / kParity need >= 2 entries on
  // axis 1, kCheckerboard an image of >= 2 pixels), hidden sizes are >= 1
  // (at least one), context_dim >= 0 and the transform is valid.
  absl::Status Validate() const;
};

class Coupling : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<Coupling>> Create(
      const CouplingOptions& options, Rng& rng);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  // "<transform>_coupling": additive_coupling, affine_coupling, ...
  std::string name() const override;
  const CouplingOptions& options() const { return o_; }

 private:
  Coupling(const CouplingOptions& options, Rng& rng);
  FlowResult Apply(const Tensor& x, const Tensor& context, bool inverse) const;
  // theta [N, K, P] from the net's output for K transformed entries.
  Tensor Params(const Tensor& h, int64_t k) const;

  CouplingOptions o_;
  Net net_;
  std::vector<int64_t> a_, b_, merge_;  // axis-1 split; merge_: [a, b] ->
                                        // original order
  enum class Merge { kAB, kBA, kGather, kPixels } merge_kind_;
  Tensor pixel_mask_;  // kCheckerboard: buffer [H, W], 1 where x passes
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_COUPLING_H_
