// Masked coupling for images [N, C, H, W] (RealNVP, Dinh et al. 2016).
//
// A constant 0/1 mask m [C, H, W] marks the pixels that pass through; the
// net sees the masked image (and the context as K constant channels):
//   h = net([x * m, c]),   t = h[:, :C] * (1 - m),   r = h[:, C:]
//   additive:  z = x + t                       logdet = 0
//   affine:    z = x * s + t,  log s = LogScale(r) * (1 - m)   (coupling.h)
//              logdet = sum_{c,h,w} log s
//   Inverse:   x = (z - t) / s,  logdet = -sum log s
// Net shapes: [N, C + K, H, W] -> [N, C, H, W] (additive) or [N, 2C, H, W]
// (affine: shift channels first, then raw scale). ConvNet starts at zero.
// Masks:
//   CheckerboardMask: m = 1 where (h + w) is even (odd when flipped)
//   ChannelMask:      m = 1 on the first C/2 channels (the rest when flipped)
// Alternate flipped and unflipped masks in a stack.
#ifndef FLOWTAPE_FLOWS_MASKED_COUPLING_H_
#define FLOWTAPE_FLOWS_MASKED_COUPLING_H_

#include <cstdint>
#include <memory>
#include <string>

#include "flows/conditioner.h"
#include "flows/coupling.h"
#include "flows/flow.h"

namespace flowtape::flows {

Tensor CheckerboardMask(int64_t c, int64_t h, int64_t w, bool flip);
Tensor ChannelMask(int64_t c, int64_t h, int64_t w, bool flip);

class MaskedCoupling : public Flow {
 public:
  MaskedCoupling(const Tensor& mask, Net net, CouplingKind kind,
                 int64_t context_dim = 0, double scale_bound = 3.0);

  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  std::string name() const override { return "masked_coupling"; }
  int64_t context_dim() const { return context_dim_; }

 private:
  FlowResult Apply(const Tensor& x, const Tensor& context, bool inverse) const;
  Tensor mask_, inv_mask_;  // [C, H, W]
  Net net_;
  CouplingKind kind_;
  int64_t context_dim_;
  double scale_bound_;
};

// A masked coupling with ConvNet(C + K, hidden, P C) as conditioner.
std::shared_ptr<MaskedCoupling> ConvCoupling(const Tensor& mask, int64_t hidden,
                                             CouplingKind kind, Rng& rng,
                                             int64_t context_dim = 0);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_MASKED_COUPLING_H_
