// Coupling layers on vectors [N, D]: NICE (additive) and RealNVP (affine).
//
// Features split by a mask into an identity part a (mask true) and a
// transformed part b. A conditioner net sees x_a (and the context c):
//   h = net([x_a, c])
//   additive (NICE, Dinh et al. 2014):  z_b = x_b + t,       t = h
//   affine (RealNVP, Dinh et al. 2016): z_b = x_b * s + t,   (t, r) = split(h)
// with a bounded, stable log-scale:
//   kAffineTanh:    log s = B tanh(r / B)     (soft clamp, B = scale_bound)
//   kAffineSigmoid: log s = log sigmoid(r + 2)  (Glow's choice)
// Forward (data -> base) as above; z_a = x_a.
//   Forward logdet = sum_b log s  (0 for additive: volume preserving)
//   Inverse: x_b = (z_b - t) / s,  logdet = -sum_b log s.
// Net shapes: input [N, |a| + K], output [N, |b|] (additive) or [N, 2|b|]
// (affine: shift first, then raw scale). MlpNet starts at zero, so a fresh
// coupling is the identity.
// Stacks: alternate HalfMask(d, false/true) (or put a Permute between
// couplings) so every feature is transformed; RealNvp() and Nice() build them.
#ifndef FLOWTAPE_FLOWS_COUPLING_H_
#define FLOWTAPE_FLOWS_COUPLING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "flows/conditioner.h"
#include "flows/flow.h"

namespace flowtape::flows {

enum class CouplingKind { kAdditive, kAffineTanh, kAffineSigmoid };

// Number of conditioner outputs per transformed feature (1 or 2).
int ParamsPerFeature(CouplingKind kind);
// log s from the raw net output r (see above).
Tensor LogScale(CouplingKind kind, const Tensor& raw, double scale_bound);

// true for the first ceil(d/2) features (or the rest when `flip`).
std::vector<bool> HalfMask(int64_t d, bool flip);
// true for even features (odd when `flip`).
std::vector<bool> ParityMask(int64_t d, bool flip);

class Coupling : public Flow {
 public:
  // identity_mask[i]: feature i passes through and conditions the others.
  Coupling(std::vector<bool> identity_mask, Net net, CouplingKind kind,
           int64_t context_dim = 0, double scale_bound = 3.0);

  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  std::string name() const override;
  int64_t context_dim() const { return context_dim_; }

 private:
  FlowResult Apply(const Tensor& x, const Tensor& context, bool inverse) const;
  Tensor Gather(const Tensor& x, const std::vector<int64_t>& idx,
                bool contiguous) const;

  Net net_;
  CouplingKind kind_;
  int64_t dim_, context_dim_;
  double scale_bound_;
  std::vector<int64_t> a_, b_, merge_;  // merge_: [a, b] -> original order
  bool a_contiguous_, b_contiguous_;
  enum class Merge { kAB, kBA, kGather } merge_kind_;
};

// A coupling with an MLP conditioner (hidden sizes, activation).
std::shared_ptr<Coupling> MlpCoupling(
    std::vector<bool> identity_mask, const std::vector<int64_t>& hidden,
    CouplingKind kind, Rng& rng, int64_t context_dim = 0,
    nn::Activation act = nn::Activation::kRelu);

// RealNVP stack: `layers` affine (tanh-bounded) couplings with alternating
// half masks, MLP conditioners.
std::shared_ptr<Flow> RealNvp(int64_t d, int layers,
                              const std::vector<int64_t>& hidden, Rng& rng,
                              int64_t context_dim = 0);
// NICE: `layers` additive couplings with alternating half masks, then the
// diagonal scaling layer (scaling.h).
std::shared_ptr<Flow> Nice(int64_t d, int layers,
                           const std::vector<int64_t>& hidden, Rng& rng,
                           int64_t context_dim = 0);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_COUPLING_H_
