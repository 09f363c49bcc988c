#include "flows/flow_model.h"

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {
void CheckContext(const char* who, int64_t n, const Tensor& context) {
  FT_CHECK(!context.defined() || (context.rank() == 2 && context.dim(0) == n),
           who, ": context ", context.shape().ToString(), " for batch ", n,
           " (want [", n, ", K])");
}
Tensor ToDType(const Tensor& t, DType dtype) {
  return t.defined() ? Cast(t, dtype) : t;
}
}  // namespace

FlowModel::FlowModel(std::shared_ptr<Distribution> base,
                     std::shared_ptr<Flow> flow) {
  FT_CHECK(base != nullptr && flow != nullptr, "flow_model: null base or flow");
  flow_ = RegisterModule("flow", std::move(flow));
  base_ = RegisterModule("base", std::move(base));
}

FlowModel::Density FlowModel::Score(const Tensor& x, const Tensor& context,
                                    Rng* rng) const {
  CheckContext("flow_model.log_prob", x.dim(0), context);
  Density d;
  d.pass = flow_->Forward(Cast(x, dtype()), ToDType(context, dtype()), rng);
  d.log_prob = base_->LogProbEstimate(d.pass.value, rng) + d.pass.logdet;
  return d;
}

Tensor FlowModel::LogProb(const Tensor& x, const Tensor& context,
                          Rng* rng) const {
  return Score(x, context, rng).log_prob;
}

Tensor FlowModel::Sample(int64_t n, Rng& rng, const Tensor& context) const {
  CheckContext("flow_model.sample", n, context);
  return flow_
      ->InverseValue(base_->Sample(n, rng), ToDType(context, dtype()), &rng)
      .value;
}

FlowModel::SampleResult FlowModel::SampleWithLogProb(
    int64_t n, Rng& rng, const Tensor& context) const {
  CheckContext("flow_model.sample", n, context);
  Tensor z = base_->Sample(n, rng);
  FlowResult r = flow_->Inverse(z, ToDType(context, dtype()), &rng);
  return {r.value, base_->LogProb(z) - r.logdet};
}

Tensor FlowModel::Nll(const Tensor& x, const Tensor& context, Rng* rng) const {
  return -Mean(LogProb(x, context, rng));
}

absl::Status FlowModel::InitializeFromData(const Tensor& x,
                                           const Tensor& context,
                                           Rng* rng) const {
  CheckContext("flow_model.initialize_from_data", x.dim(0), context);
  return flows::InitializeFromData(*flow_, Cast(x, dtype()),
                                   ToDType(context, dtype()), rng);
}

}  // namespace flowtape::flows
