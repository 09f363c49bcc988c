#include "flows/cnf/anode.h"

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"

namespace flowtape::flows::cnf {

NeuralOdeModel::NeuralOdeModel(int64_t in_dim, const NeuralOdeOptions& options,
                               Rng& rng)
    : in_dim_(in_dim), options_(options) {
  const int64_t d = in_dim + options.augment_dim;
  dynamics_ = RegisterModule(
      "dynamics",
      std::make_shared<TimeMlp>(d, options.hidden, options.activation, rng));
  head_ = RegisterModule("head",
                         std::make_shared<nn::Linear>(d, options.out_dim, rng));
}

absl::StatusOr<Tensor> NeuralOdeModel::Features(const Tensor& x) const {
  if (x.rank() != 2 || x.dim(1) != in_dim_)
    return absl::InvalidArgumentError(
        absl::StrCat("neural_ode: input must be [N, ", in_dim_, "], got ",
                     x.shape().ToString()));
  Tensor h0 =
      options_.augment_dim > 0
          ? Concat({x, Tensor::Zeros({x.dim(0), options_.augment_dim})}, 1)
          : x;
  std::shared_ptr<TimeMlp> f = dynamics_;
  ode::OdeFn field = [f](double t, const Tensor& h) { return (*f)(t, h); };
  auto sol = ode::OdeSolve(field, h0, {0.0, options_.t_end},
                           dynamics_->Parameters(), options_.ode);
  if (!sol.ok()) return sol.status();
  stats_ = sol->stats;
  return sol->ys[1];
}

absl::StatusOr<Tensor> NeuralOdeModel::operator()(const Tensor& x) const {
  auto h = Features(x);
  if (!h.ok()) return h.status();
  return (*head_)(*h);
}

}  // namespace flowtape::flows::cnf
