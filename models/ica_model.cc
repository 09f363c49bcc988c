#include "models/ica_model.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "flows/distribution.h"
#include "models/model_state.h"
#include "nn/checkpoint.h"

namespace flowtape::models {

absl::StatusOr<SpecifiedModel> IcaModel(const flows::IcaResult& fit) {
  if (!fit.model)
    return absl::InvalidArgumentError("ica model: the fit holds no model");
  const flows::FlowModel& fitted = *fit.model;
  const Tensor& a = fit.unmixing;
  const int64_t d = a.rank() == 2 ? a.dim(0) : 0;
  if (d < 1 || a.dim(1) != d || fit.mean.shape() != Shape{d})
    return absl::InvalidArgumentError(absl::StrCat(
        "ica model: want unmixing [D, D] and mean [D], got ",
        a.shape().ToString(), " and ", fit.mean.shape().ToString()));
  SpecifiedModel out;
  ModelSpec& spec = out.spec;
  spec.family = "ica";
  spec.dtype = spec.config.dtype = fitted.dtype();
  spec.config.event = Shape{d};
  const auto* mixture =
      dynamic_cast<const flows::FactorizedMixture*>(fitted.base().get());
  std::string location;  // the tensor that takes A m
  if (mixture != nullptr) {
    spec.config.base = BaseChoice::kFactorizedMixture;
    location = "base.means";
  } else if (dynamic_cast<const flows::Logistic*>(fitted.base().get())) {
    location = "buffer/base.loc";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("ica model: base '", fitted.base()->name(),
                     "' is neither logistic nor factorized_mixture"));
  }
  std::vector<double> shift(d, 0.0);  // A m, in float64
  for (int64_t j = 0; j < d; ++j)
    for (int64_t i = 0; i < d; ++i) shift[j] += a[j * d + i] * fit.mean[i];
  nn::NamedTensors state = ModelState(fitted);
  for (auto& [name, t] : state) {
    if (name != location) continue;
    if (mixture != nullptr) spec.config.components = t.dim(1);
    std::vector<double> v = t.ToVector();
    const int64_t per_row = t.numel() / d;  // K for the mixture, 1 for loc
    for (int64_t i = 0; i < t.numel(); ++i) v[i] += shift[i / per_row];
    t = Tensor::FromVector(t.shape(), v, t.dtype());
  }
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(out.model, MakeModel(spec.family, spec.config, rng));
  FT_RETURN_IF_ERROR(nn::RestoreFromTensors("ica model", state, *out.model));
  return out;
}

}  // namespace flowtape::models
