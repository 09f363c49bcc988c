#include "flows/ica.h"

#include <cmath>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/linear.h"
#include "nn/optim.h"

namespace flowtape::flows {

absl::Status IcaOptions::Validate() const {
  if (steps < 0 || !(lr > 0 && std::isfinite(lr)) || mixture_components < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "ica: need steps >= 0, 0 < lr < inf, mixture_components >= 0; got ",
        steps, ", ", lr, ", ", mixture_components));
  return absl::OkStatus();
}

absl::StatusOr<IcaResult> FitInfomaxIca(const Tensor& x,
                                        const IcaOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  if (x.rank() != 2 || x.dim(0) <= x.dim(1) || x.dim(1) < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "ica: want data [N, D] with N > D, got ", x.shape().ToString()));
  for (int64_t i = 0; i < x.numel(); ++i)
    if (!std::isfinite(x[i]))
      return absl::InvalidArgumentError(
          absl::StrCat("ica: x[", i / x.dim(1), ", ", i % x.dim(1),
                       "] = ", x[i], " is not finite"));
  const int64_t d = x.dim(1);
  IcaResult r;
  Tensor centred;
  {
    NoGradScope ng;
    r.mean = Mean(x, 0).Detach();
    centred = (x - r.mean).Detach();
  }
  FT_ASSIGN_OR_RETURN(std::shared_ptr<LinearFlow> flow, LinearFlow::Create(d));
  std::shared_ptr<Distribution> base;
  if (options.mixture_components > 0) {
    MixtureOptions mixture;
    mixture.components = options.mixture_components;
    mixture.dims = d;
    FT_ASSIGN_OR_RETURN(base, FactorizedMixture::Create(mixture));
  } else {
    FT_ASSIGN_OR_RETURN(base, Logistic::Create(Shape({d})));
  }
  r.model = std::make_shared<FlowModel>(base, flow);
  FlowModel& model = *r.model;
  model.To(x.dtype());
  nn::AdamOptions o;
  o.lr = options.lr;
  FT_ASSIGN_OR_RETURN(auto adam, nn::Adam::Create(model, o));
  for (int step = 0; step < options.steps; ++step) {
    TapeScope scope;
    adam->ZeroGrad();
    Tensor nll = model.Nll(centred);
    Backward(nll);
    adam->Step();
    r.nll.push_back(nll.item());
  }
  NoGradScope ng;
  r.unmixing = flow->unmixing().Detach();
  r.mixing = flow->Mixing();
  r.sources = flow->Forward(centred).value.Detach();
  return r;
}

double AmariIndex(const Tensor& p) {
  FT_CHECK(p.rank() == 2 && p.dim(0) == p.dim(1) && p.dim(0) >= 2,
           "amari_index: want a square [D, D] matrix with D >= 2, got ",
           p.shape().ToString());
  const int64_t d = p.dim(0);
  double s = 0;
  for (int64_t i = 0; i < d; ++i) {
    double row_max = 0, col_max = 0, row_sum = 0, col_sum = 0;
    for (int64_t j = 0; j < d; ++j) {
      row_max = std::max(row_max, std::fabs(p[i * d + j]));
      col_max = std::max(col_max, std::fabs(p[j * d + i]));
      row_sum += std::fabs(p[i * d + j]);
      col_sum += std::fabs(p[j * d + i]);
    }
    s += row_sum / row_max - 1 + col_sum / col_max - 1;
  }
  return s / (2.0 * d * (d - 1));
}

Tensor LaplaceSources(int64_t n, int64_t d, Rng& rng) {
  Tensor s = Tensor::Empty({n, d});
  double* p = s.mutable_data<double>();
  for (int64_t i = 0; i < n * d; ++i) {
    double u = rng.Uniform() - 0.5;  // inverse CDF of Laplace(0, 1)
    p[i] = -std::copysign(std::log1p(-2 * std::fabs(u)), u);
  }
  return s;
}

}  // namespace flowtape::flows
