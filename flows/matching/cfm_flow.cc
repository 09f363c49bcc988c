#include "flows/matching/cfm_flow.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows::matching {

TimeReversedField::TimeReversedField(std::shared_ptr<cnf::CnfDynamics> velocity)
    : velocity_(RegisterModule("velocity", std::move(velocity))) {}

Tensor TimeReversedField::operator()(double t, const Tensor& z) const {
  return -(*velocity_)(1.0 - t, z);
}

Tensor TimeReversedField::operator()(const Tensor& t, const Tensor& z,
                                     const Tensor& context) const {
  return -(*velocity_)(1.0 - t, z, context);
}

Tensor TimeReversedField::ValueAndTrace(const Tensor& t, const Tensor& z,
                                        const Tensor& context,
                                        Tensor* trace) const {
  Tensor tr;
  Tensor v = velocity_->ValueAndTrace(1.0 - t, z, context, &tr);
  *trace = -tr;
  return -v;
}

absl::StatusOr<std::shared_ptr<cnf::Cnf>> MakeFlowMatchingCnf(
    std::shared_ptr<cnf::CnfDynamics> velocity,
    const cnf::CnfOptions& options) {
  if (velocity == nullptr)
    return absl::InvalidArgumentError("flow matching cnf: null velocity");
  if (options.t_end != 1.0 || options.train_t)
    return absl::InvalidArgumentError(absl::StrCat(
        "flow matching cnf: the field maps over t in [0, 1]: t_end must be 1 "
        "and train_t off, got t_end ",
        options.t_end, ", train_t ", options.train_t));
  if (options.lambda_kinetic != 0 || options.lambda_jacobian != 0)
    return absl::InvalidArgumentError(
        "flow matching cnf: RNODE weights do not apply to a matched field");
  cnf::CnfOptions o = options;
  if (o.name.empty()) o.name = "cfm";
  return cnf::Cnf::Create(
      std::make_shared<TimeReversedField>(std::move(velocity)), o);
}

std::shared_ptr<cnf::CnfDynamics> MatchedVelocity(const Flow& flow) {
  const auto* c = dynamic_cast<const cnf::Cnf*>(&flow);
  if (c == nullptr) return nullptr;
  const auto* f = dynamic_cast<const TimeReversedField*>(c->dynamics().get());
  return f == nullptr ? nullptr : f->velocity();
}

}  // namespace flowtape::flows::matching
