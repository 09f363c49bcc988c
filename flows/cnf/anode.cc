#include "flows/cnf/anode.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows::cnf {

absl::Status NeuralOdeOptions::Validate() const {
  if (augment_dim < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "neural_ode: augment_dim must be >= 0, got ", augment_dim));
  for (int64_t h : hidden)
    if (h < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("neural_ode: hidden widths must be >= 1, got ", h));
  if (out_dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("neural_ode: out_dim must be >= 1, got ", out_dim));
  if (!std::isfinite(t_end) || t_end == 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "neural_ode: t_end must be finite and nonzero, got ", t_end));
  return ode.Validate();
}

absl::StatusOr<std::shared_ptr<NeuralOdeModel>> NeuralOdeModel::Create(
    int64_t in_dim, const NeuralOdeOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  if (in_dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("neural_ode: in_dim must be >= 1, got ", in_dim));
  FT_ASSIGN_OR_RETURN(std::shared_ptr<TimeMlp> dynamics,
                      TimeMlp::Create(in_dim + options.augment_dim,
                                      options.hidden, options.activation, rng));
  return std::shared_ptr<NeuralOdeModel>(
      new NeuralOdeModel(in_dim, options, std::move(dynamics), rng));
}

NeuralOdeModel::NeuralOdeModel(int64_t in_dim, const NeuralOdeOptions& options,
                               std::shared_ptr<TimeMlp> dynamics, Rng& rng)
    : in_dim_(in_dim), options_(options) {
  dynamics_ = RegisterModule("dynamics", std::move(dynamics));
  head_ = RegisterModule(
      "head",
      nn::Linear::Create(dynamics_->dim(), options.out_dim, rng).value());
}

absl::StatusOr<Tensor> NeuralOdeModel::Features(const Tensor& x) const {
  if (x.rank() != 2 || x.dim(1) != in_dim_)
    return absl::InvalidArgumentError(
        absl::StrCat("neural_ode: input must be [N, ", in_dim_, "], got ",
                     x.shape().ToString()));
  Tensor h0 =
      options_.augment_dim > 0
          ? Concat(
                {x, Tensor::Zeros({x.dim(0), options_.augment_dim}, x.dtype())},
                1)
          : x;
  std::shared_ptr<TimeMlp> f = dynamics_;
  ode::OdeFn field = [f](double t, const Tensor& h) { return (*f)(t, h); };
  FT_ASSIGN_OR_RETURN(ode::OdeSolution sol,
                      ode::OdeSolve(field, h0, {0.0, options_.t_end},
                                    dynamics_->Parameters(), options_.ode));
  return sol.ys[1];
}

absl::StatusOr<Tensor> NeuralOdeModel::operator()(const Tensor& x) const {
  FT_ASSIGN_OR_RETURN(Tensor h, Features(x));
  return (*head_)(h);
}

}  // namespace flowtape::flows::cnf
