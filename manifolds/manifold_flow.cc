#include "manifolds/manifold_flow.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"

namespace flowtape::manifolds {

ManifoldFlowModel::ManifoldFlowModel(
    std::shared_ptr<ManifoldDensity> base,
    std::vector<std::shared_ptr<flows::Flow>> flows)
    : ManifoldDensity(base->manifold()),
      base_(std::move(base)),
      flows_(std::move(flows)) {
  RegisterModule("base", base_);
  for (size_t k = 0; k < flows_.size(); ++k)
    RegisterModule(absl::StrCat("flow", k), flows_[k]);
}

namespace {

Tensor NaNs(const Shape& shape, DType dtype) {
  return Tensor::Full(shape, std::numeric_limits<double>::quiet_NaN(), dtype);
}

}  // namespace

ManifoldFlowModel::Density ManifoldFlowModel::Score(const Tensor& y,
                                                    Rng* rng) const {
  Rng fixed(kDefaultScoreSeed);
  Rng* r = rng != nullptr ? rng : &fixed;
  Density d;
  d.pass.value = y;
  d.pass.logdet = Tensor::Zeros({y.dim(0)}, y.dtype());
  for (const auto& f : flows_) {
    flows::FlowResult step = f->Forward(d.pass.value, Tensor(), r);
    d.pass.Absorb(step);
    if (!d.pass.status.ok()) {  // later steps would only see NaN
      d.pass.value = NaNs(d.pass.value.shape(), y.dtype());
      d.pass.logdet = d.log_prob = NaNs({y.dim(0)}, y.dtype());
      return d;
    }
    d.pass.value = step.value;
    d.pass.logdet = d.pass.logdet + step.logdet;
  }
  d.log_prob = base_->LogProb(d.pass.value) + d.pass.logdet;
  return d;
}

flows::FlowResult ManifoldFlowModel::SamplePass(int64_t num, Rng& rng) const {
  NoGradScope no_grad;
  flows::FlowResult out;
  out.value = Cast(base_->Sample(num, rng), dtype());
  for (auto it = flows_.rbegin(); it != flows_.rend(); ++it) {
    flows::FlowResult step = (*it)->InverseValue(out.value, Tensor(), &rng);
    out.Absorb(step);
    if (!out.status.ok()) {
      out.value = NaNs(out.value.shape(), dtype());
      return out;
    }
    out.value = step.value;
  }
  return out;
}

Tensor ManifoldFlowModel::LogProb(const Tensor& y) const {
  return Score(y).log_prob;
}

Tensor ManifoldFlowModel::Sample(int64_t num, Rng& rng) const {
  return SamplePass(num, rng).value;
}

absl::StatusOr<Tensor> ManifoldFlowModel::TryLogProb(const Tensor& y) const {
  Density d = Score(y);
  FT_RETURN_IF_ERROR(d.pass.status);
  return d.log_prob;
}

absl::StatusOr<Tensor> ManifoldFlowModel::TrySample(int64_t num,
                                                    Rng& rng) const {
  flows::FlowResult r = SamplePass(num, rng);
  FT_RETURN_IF_ERROR(r.status);
  return r.value;
}

absl::StatusOr<std::shared_ptr<FlowMixture>> FlowMixture::Create(
    std::vector<std::shared_ptr<ManifoldDensity>> parts) {
  if (parts.empty())
    return absl::InvalidArgumentError("FlowMixture: no components");
  for (size_t j = 0; j < parts.size(); ++j) {
    if (parts[j] == nullptr)
      return absl::InvalidArgumentError(
          absl::StrCat("FlowMixture: component ", j, " is null"));
    const Manifold& m = parts[j]->manifold();
    const Manifold& m0 = parts[0]->manifold();
    if (m.kind() != m0.kind() || m.ambient() != m0.ambient())
      return absl::InvalidArgumentError(
          absl::StrCat("FlowMixture: component ", j, " lives on ", m.name(),
                       ", component 0 on ", m0.name()));
  }
  return std::shared_ptr<FlowMixture>(new FlowMixture(std::move(parts)));
}

FlowMixture::FlowMixture(std::vector<std::shared_ptr<ManifoldDensity>> parts)
    : ManifoldDensity(parts.at(0)->manifold()), parts_(std::move(parts)) {
  const int64_t k = parts_.size();
  for (int64_t j = 0; j < k; ++j)
    RegisterModule(absl::StrCat("part", j), parts_[j]);
  logits_ = RegisterParameter("logits", Tensor::Zeros({k}));
}

Tensor FlowMixture::Mix(const std::vector<Tensor>& part_log_probs) const {
  const int64_t k = parts_.size();
  std::vector<Tensor> cols;
  for (const Tensor& l : part_log_probs) cols.push_back(Reshape(l, {-1, 1}));
  Tensor log_w = Reshape(LogSoftmax(logits_, 0), {1, k});
  return LogSumExp(Concat(cols, 1) + log_w, 1);
}

Tensor FlowMixture::LogProb(const Tensor& y) const {
  std::vector<Tensor> parts;
  for (const auto& p : parts_) parts.push_back(p->LogProb(y));
  return Mix(parts);
}

absl::StatusOr<Tensor> FlowMixture::TryLogProb(const Tensor& y) const {
  std::vector<Tensor> parts;
  for (size_t j = 0; j < parts_.size(); ++j) {
    absl::StatusOr<Tensor> l = parts_[j]->TryLogProb(y);
    if (!l.ok())
      return absl::Status(l.status().code(),
                          absl::StrCat("FlowMixture component ", j, ": ",
                                       l.status().message()));
    parts.push_back(*std::move(l));
  }
  return Mix(parts);
}

Tensor FlowMixture::Sample(int64_t num, Rng& rng) const {
  absl::StatusOr<Tensor> s = SampleWith(
      num, rng,
      [](const ManifoldDensity& p, int64_t n,
         Rng& r) -> absl::StatusOr<Tensor> { return p.Sample(n, r); });
  return s.ok() ? *std::move(s) : NaNs({num, manifold().ambient()}, dtype());
}

absl::StatusOr<Tensor> FlowMixture::TrySample(int64_t num, Rng& rng) const {
  return SampleWith(num, rng, [](const ManifoldDensity& p, int64_t n, Rng& r) {
    return p.TrySample(n, r);
  });
}

absl::StatusOr<Tensor> FlowMixture::SampleWith(
    int64_t num, Rng& rng,
    const std::function<absl::StatusOr<Tensor>(const ManifoldDensity&, int64_t,
                                               Rng&)>& draw) const {
  NoGradScope no_grad;
  const int64_t k = parts_.size(), n = manifold().ambient();
  const std::vector<double> w = flows::MixtureWeights(logits_, 0, k);
  if (w.empty())
    return absl::InvalidArgumentError(
        "FlowMixture: the mixture logits define no weights (a NaN or +inf "
        "entry)");
  std::vector<int64_t> counts(k, 0), which(num);
  for (int64_t i = 0; i < num; ++i) ++counts[which[i] = rng.Categorical(w)];
  std::vector<std::vector<double>> values(k);
  std::vector<int64_t> used(k, 0);
  for (int64_t j = 0; j < k; ++j) {
    if (counts[j] == 0) continue;
    absl::StatusOr<Tensor> d = draw(*parts_[j], counts[j], rng);
    if (!d.ok())
      return absl::Status(d.status().code(),
                          absl::StrCat("FlowMixture component ", j, ": ",
                                       d.status().message()));
    values[j] = d->ToVector();
  }
  std::vector<double> out(num * n);
  for (int64_t i = 0; i < num; ++i) {
    const int64_t j = which[i];
    const double* src = values[j].data() + (used[j]++) * n;
    std::copy(src, src + n, out.begin() + i * n);
  }
  return Tensor::FromVector({num, n}, out, dtype());
}

}  // namespace flowtape::manifolds
