#include "manifolds/manifold_flow.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
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

Tensor ManifoldFlowModel::LogProb(const Tensor& y) const {
  Tensor x = y, logdet = Tensor::Zeros({y.dim(0)}, y.dtype());
  for (const auto& f : flows_) {
    flows::FlowResult r = f->Forward(x);
    x = r.value;
    logdet = logdet + r.logdet;
  }
  return base_->LogProb(x) + logdet;
}

Tensor ManifoldFlowModel::Sample(int64_t num, Rng& rng) const {
  NoGradScope no_grad;
  Tensor x = Cast(base_->Sample(num, rng), dtype());
  for (auto it = flows_.rbegin(); it != flows_.rend(); ++it)
    x = (*it)->Inverse(x).value;
  return x;
}

FlowMixture::FlowMixture(std::vector<std::shared_ptr<ManifoldDensity>> parts)
    : ManifoldDensity(parts.at(0)->manifold()), parts_(std::move(parts)) {
  const int64_t k = parts_.size();
  for (int64_t j = 0; j < k; ++j) {
    FT_CHECK(parts_[j]->manifold().ambient() == manifold().ambient(),
             "FlowMixture: components live on different manifolds");
    RegisterModule(absl::StrCat("part", j), parts_[j]);
  }
  logits_ = RegisterParameter("logits", Tensor::Zeros({k}));
}

Tensor FlowMixture::LogProb(const Tensor& y) const {
  const int64_t k = parts_.size();
  std::vector<Tensor> cols;
  for (const auto& p : parts_) cols.push_back(Reshape(p->LogProb(y), {-1, 1}));
  Tensor log_w = Reshape(LogSoftmax(logits_, 0), {1, k});
  return LogSumExp(Concat(cols, 1) + log_w, 1);
}

Tensor FlowMixture::Sample(int64_t num, Rng& rng) const {
  NoGradScope no_grad;
  const int64_t k = parts_.size(), n = manifold().ambient();
  const std::vector<double> w = flows::MixtureWeights(logits_, 0, k);
  if (w.empty())  // logits that define no weights: NaN rows
    return Tensor::Full({num, n}, std::numeric_limits<double>::quiet_NaN(),
                        dtype());
  std::vector<int64_t> counts(k, 0), which(num);
  for (int64_t i = 0; i < num; ++i) ++counts[which[i] = rng.Categorical(w)];
  std::vector<Tensor> draws(k);
  std::vector<int64_t> used(k, 0);
  for (int64_t j = 0; j < k; ++j)
    if (counts[j] > 0) draws[j] = parts_[j]->Sample(counts[j], rng);
  std::vector<std::vector<double>> values(k);
  for (int64_t j = 0; j < k; ++j)
    if (counts[j] > 0) values[j] = draws[j].ToVector();
  std::vector<double> out(num * n);
  for (int64_t i = 0; i < num; ++i) {
    const int64_t j = which[i];
    const double* src = values[j].data() + (used[j]++) * n;
    std::copy(src, src + n, out.begin() + i * n);
  }
  return Tensor::FromVector({num, n}, out, dtype());
}

}  // namespace flowtape::manifolds
