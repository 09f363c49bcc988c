#include "flows/flow_model.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

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
  Rng fixed(kDefaultScoreSeed);
  d.pass = flow_->Forward(Cast(x, dtype()), ToDType(context, dtype()),
                          rng != nullptr ? rng : &fixed);
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

absl::Status FlowModel::CheckInput(const Tensor& x,
                                   const Tensor& context) const {
  const Shape& event = base_->event_shape();
  bool fits = x.defined() && x.rank() == event.rank() + 1;
  for (int i = 0; fits && i < event.rank(); ++i)
    fits = x.dim(i + 1) == event[i];
  if (!fits) {
    std::string want = "[N";
    for (int i = 0; i < event.rank(); ++i)
      absl::StrAppend(&want, ", ", event[i]);
    return absl::InvalidArgumentError(absl::StrCat(
        "flow_model: x ", x.defined() ? x.shape().ToString() : "undefined",
        " for event ", event.ToString(), " (want ", want, "])"));
  }
  if (context.defined() && (context.rank() != 2 || context.dim(0) != x.dim(0)))
    return absl::InvalidArgumentError(
        absl::StrCat("flow_model: context ", context.shape().ToString(),
                     " for batch ", x.dim(0), " (want [", x.dim(0), ", K])"));
  return absl::OkStatus();
}

absl::Status FlowModel::InitializeFromData(const Tensor& x,
                                           const Tensor& context,
                                           Rng* rng) const {
  FT_RETURN_IF_ERROR(CheckInput(x, context));
  Rng fixed(kDefaultScoreSeed);
  return flows::InitializeFromData(*flow_, Cast(x, dtype()),
                                   ToDType(context, dtype()),
                                   rng != nullptr ? rng : &fixed);
}

}  // namespace flowtape::flows
