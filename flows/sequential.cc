#include "flows/sequential.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

Sequential::Sequential(std::vector<std::shared_ptr<Flow>> steps) {
  for (auto& s : steps) Add(std::move(s));
}

Sequential& Sequential::Add(std::shared_ptr<Flow> step) {
  FT_CHECK(step != nullptr, "sequential: null step");
  steps_.push_back(RegisterModule(absl::StrCat(steps_.size()), step));
  return *this;
}

FlowResult Sequential::Forward(const Tensor& x, const Tensor& context,
                               Rng* rng) const {
  FlowResult r{x, Tensor::Zeros({x.dim(0)}, x.dtype())};
  for (const auto& s : steps_) {
    FlowResult k = s->Forward(r.value, context, rng);
    r.value = k.value;
    r.logdet = r.logdet + k.logdet;
    r.Absorb(k);
  }
  return r;
}

FlowResult Sequential::Inverse(const Tensor& z, const Tensor& context,
                               Rng* rng) const {
  FlowResult r{z, Tensor::Zeros({z.dim(0)}, z.dtype())};
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    FlowResult k = (*it)->Inverse(r.value, context, rng);
    r.value = k.value;
    r.logdet = r.logdet + k.logdet;
    r.Absorb(k);
  }
  return r;
}

FlowResult Sequential::InverseValue(const Tensor& z, const Tensor& context,
                                    Rng* rng) const {
  FlowResult r{z, Tensor()};
  for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
    FlowResult k = (*it)->InverseValue(r.value, context, rng);
    r.value = k.value;
    r.Absorb(k);
  }
  return r;
}

bool Sequential::analytic_inverse() const {
  for (const auto& s : steps_)
    if (!s->analytic_inverse()) return false;
  return true;
}

std::string Sequential::name() const {
  std::string out = "sequential(";
  for (size_t i = 0; i < steps_.size(); ++i)
    absl::StrAppend(&out, i ? ", " : "", steps_[i]->name());
  return out + ")";
}

}  // namespace flowtape::flows
