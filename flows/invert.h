// Invert: the same bijection used the other way around.
//
//   Invert(f).Forward(x) = f.Inverse(x),  Invert(f).Inverse(z) = f.Forward(z)
// with their log-dets (the sign convention of flow.h holds automatically:
// each log-det is log|det| of the map actually applied). Turns MAF (fast
// density, sequential sampling) into IAF (fast sampling, sequential density),
// and a planar flow's closed-form generative map into a normalizing one.
#ifndef FLOWTAPE_FLOWS_INVERT_H_
#define FLOWTAPE_FLOWS_INVERT_H_

#include <memory>
#include <string>

#include "autodiff/check.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Invert : public Flow {
 public:
  explicit Invert(std::shared_ptr<Flow> flow)
      : flow_(RegisterModule("flow", std::move(flow))) {
    FT_CHECK(flow_ != nullptr, "invert: null flow");
  }
  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override {
    return flow_->Inverse(x, context, rng);
  }
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override {
    return flow_->Forward(z, context, rng);
  }
  // Both directions of the wrapped flow run; neither is numeric only if the
  // wrapped flow's inverse is analytic.
  bool analytic_inverse() const override { return flow_->analytic_inverse(); }
  std::string name() const override { return "invert(" + flow_->name() + ")"; }
  const std::shared_ptr<Flow>& flow() const { return flow_; }

 private:
  std::shared_ptr<Flow> flow_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_INVERT_H_
