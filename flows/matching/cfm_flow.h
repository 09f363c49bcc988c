// The flow of a flow-matching velocity field, as a Cnf (flows/cnf/cnf.h):
// sampling, exact or Hutchinson log-likelihoods, the ODE solvers, NFE
// counters and both gradient modes come from the Cnf unchanged.
//
// Time convention. Flow matching's field v(s, x) carries noise (s = 0) to
// data (s = 1): dx/ds = v(s, x). The Cnf's Forward goes data -> base over
// t in [0, 1] (and Inverse base -> data over t: 1 -> 0). With s = 1 - t the
// Cnf's dynamics are
//   f(t, z, c) = -v(1 - t, z, c),   tr(df/dz) = -tr(dv/dz),
// so Forward(x1) = (x0, log|det dx0/dx1|) = (x0, -int_0^1 tr(dv/dz) ds) and
// log q(x1) = log N(x0; 0, I) + logdet: the instantaneous change of
// variables (FFJORD) applied to the matched field.
//
// TimeReversedField(v) is that f: a CnfDynamics with v's dim and context,
// its parameters v's (registered as "velocity"), and v's closed-form trace
// (negated) when v has one. MakeFlowMatchingCnf(v, options) builds the Cnf
// over it; the options must keep t_end = 1, train_t off and no RNODE
// weights (InvalidArgument otherwise): the field was trained for that map.
// Its name() is "cfm". MatchedVelocity(flow) gives back v from a flow made
// by MakeFlowMatchingCnf (nullptr for any other flow), so a model built by
// name (models/zoo.h, "cfm") can be trained by flow matching.
#ifndef FLOWTAPE_FLOWS_MATCHING_CFM_FLOW_H_
#define FLOWTAPE_FLOWS_MATCHING_CFM_FLOW_H_

#include <memory>

#include "absl/status/statusor.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"

namespace flowtape::flows::matching {

class TimeReversedField : public cnf::CnfDynamics {
 public:
  explicit TimeReversedField(std::shared_ptr<cnf::CnfDynamics> velocity);

  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return velocity_->dim(); }
  int64_t context_dim() const override { return velocity_->context_dim(); }
  bool has_closed_form_trace() const override {
    return velocity_->has_closed_form_trace();
  }
  Tensor ValueAndTrace(const Tensor& t, const Tensor& z, const Tensor& context,
                       Tensor* trace) const override;
  const std::shared_ptr<cnf::CnfDynamics>& velocity() const {
    return velocity_;
  }

 private:
  std::shared_ptr<cnf::CnfDynamics> velocity_;
};

absl::StatusOr<std::shared_ptr<cnf::Cnf>> MakeFlowMatchingCnf(
    std::shared_ptr<cnf::CnfDynamics> velocity,
    const cnf::CnfOptions& options = cnf::CnfOptions());

std::shared_ptr<cnf::CnfDynamics> MatchedVelocity(const Flow& flow);

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_CFM_FLOW_H_
