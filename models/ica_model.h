// The catalogue model of a fitted ICA (flows/ica.h), so a fit is saved as a
// model file (models/model_file.h) and LoadModel rebuilds it.
//
// FitInfomaxIca fits
//   log p(x) = log p_s(A (x - m)) + log|det A|
// with p_s a standard logistic (Infomax) or a FactorizedMixture of K
// components per coordinate (IFA), and the data mean m subtracted outside
// the model. The catalogue's "ica" family is z = A x on its base, so the
// mean goes into the base's location, A (x - m) = A x - A m:
//   logistic base:   loc = A m           (the base's "loc" buffer; scale 1)
//   mixture base:    mu_jk <- mu_jk + (A m)_j
// IcaModel(fit) gives the spec {family "ica", event [D], base "family" or
// "factorized" with components K, the fit's dtype} and the model with those
// values; the model's log p(x) equals fit.model->LogProb(x - m) up to the
// rounding of A m (a few ulps of |A m| in the model's dtype), and a model
// file of it loads with bit-identical log-densities.
// InvalidArgument if the fit has no model or a base other than these two.
#ifndef FLOWTAPE_MODELS_ICA_MODEL_H_
#define FLOWTAPE_MODELS_ICA_MODEL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "flows/flow_model.h"
#include "flows/ica.h"
#include "models/model_spec.h"

namespace flowtape::models {

struct SpecifiedModel {
  ModelSpec spec;
  std::shared_ptr<flows::FlowModel> model;  // what spec builds, fitted values
};

absl::StatusOr<SpecifiedModel> IcaModel(const flows::IcaResult& fit);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_ICA_MODEL_H_
