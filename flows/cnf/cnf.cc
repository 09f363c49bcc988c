#include "flows/cnf/cnf.h"

#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {

// The augmented field [f, tr J, |f|^2, |J|_F^2] on states [N, d + 1 (+2)].
// With `build`, the result is a differentiable graph (create_graph VJPs).
Tensor Field(const CnfDynamics& f, const Tensor& eps, bool regularize, double t,
             const Tensor& s, bool build) {
  const int64_t d = f.dim();
  Tensor z = Narrow(s, 1, 0, d);
  if (!build || !z.requires_grad()) z = z.Detach().set_requires_grad(true);
  Tensor fz = f(t, z);
  Tensor tr, frob;
  if (eps.defined()) {
    Tensor g = Grad({fz}, {z}, {eps}, build)[0];  // eps' J
    tr = Sum(g * eps, 1, true);
    if (regularize) frob = Sum(Square(g), 1, true);
  } else {
    for (int64_t i = 0; i < d; ++i) {
      Tensor e = Tensor::Zeros(z.shape());
      double* pe = e.mutable_data();
      for (int64_t k = 0; k < z.dim(0); ++k) pe[k * d + i] = 1.0;
      Tensor row = Grad({fz}, {z}, {e}, build)[0];  // e_i' J
      Tensor di = Narrow(row, 1, i, 1);
      tr = tr.defined() ? tr + di : di;
      if (regularize) {
        Tensor r2 = Sum(Square(row), 1, true);
        frob = frob.defined() ? frob + r2 : r2;
      }
    }
  }
  std::vector<Tensor> parts{fz, tr};
  if (regularize) parts.insert(parts.end(), {Sum(Square(fz), 1, true), frob});
  return Concat(parts, 1);
}

// Recording on (adjoint VJPs, replay): the graph. Off: values, computed in
// a scratch region of the tape that is rewound before returning.
Tensor AugmentedField(const CnfDynamics& f, const Tensor& eps, bool regularize,
                      double t, const Tensor& s) {
  if (Tape::Get().grad_enabled()) return Field(f, eps, regularize, t, s, true);
  TapeScope scratch;
  EnableGradScope grad_on;
  return Field(f, eps, regularize, t, s, false).Detach();
}

}  // namespace

Cnf::Cnf(std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options)
    : dynamics_(RegisterModule("dynamics", std::move(dynamics))),
      options_(options),
      rng_(options.seed) {}

std::string Cnf::name() const { return regularized() ? "rnode" : "ffjord"; }

bool Cnf::regularized() const {
  return options_.regularize || options_.lambda_kinetic > 0 ||
         options_.lambda_jacobian > 0;
}

absl::StatusOr<CnfResult> Cnf::Solve(const Tensor& x, bool forward) const {
  const int64_t d = dynamics_->dim();
  if (x.rank() != 2 || x.dim(1) != d)
    return absl::InvalidArgumentError(absl::StrCat(
        "cnf: input must be [N, ", d, "], got ", x.shape().ToString()));
  const int64_t n = x.dim(0);
  const bool reg = regularized();
  Tensor eps;
  if (options_.trace == TraceEstimator::kHutchinson)
    eps = SampleNoise({n, d}, options_.noise, rng_);
  std::shared_ptr<CnfDynamics> dyn = dynamics_;
  ode::OdeFn field = [dyn, eps, reg](double t, const Tensor& s) {
    return AugmentedField(*dyn, eps, reg, t, s);
  };
  Tensor s0 = Concat({x, Tensor::Zeros({n, reg ? 3 : 1})}, 1);
  std::vector<double> times = forward
                                  ? std::vector<double>{0.0, options_.t_end}
                                  : std::vector<double>{options_.t_end, 0.0};
  auto sol =
      ode::OdeSolve(field, s0, times, dynamics_->Parameters(), options_.ode);
  if (!sol.ok()) return sol.status();
  const Tensor& s = sol->ys[1];
  CnfResult r;
  r.value = Narrow(s, 1, 0, d);
  r.logdet = Reshape(Narrow(s, 1, d, 1), {n});
  if (reg) {
    r.kinetic = Reshape(Narrow(s, 1, d + 1, 1), {n});
    r.jacobian = Reshape(Narrow(s, 1, d + 2, 1), {n});
  }
  r.stats = sol->stats;
  return r;
}

Tensor Cnf::Regularization(const CnfResult& r) const {
  Tensor loss = Tensor::Scalar(0.0);
  if (!r.kinetic.defined()) return loss;
  const bool per_dim =
      options_.regularizer_units == RegularizerUnits::kPerDimMean;
  const double d = static_cast<double>(dynamics_->dim());
  if (options_.lambda_kinetic > 0)
    loss = loss + Mean(r.kinetic) *
                      (options_.lambda_kinetic / (per_dim ? 2 * d : 1.0));
  if (options_.lambda_jacobian > 0)
    loss = loss +
           Mean(r.jacobian) * (options_.lambda_jacobian / (per_dim ? d : 1.0));
  return loss;
}

FlowResult Cnf::Run(const Tensor& x, bool forward) const {
  const int64_t d = dynamics_->dim();
  FT_CHECK(x.rank() == 2 && x.dim(1) == d, "cnf: input must be [N, ", d,
           "], got ", x.shape().ToString());
  auto r = Solve(x, forward);
  status_ = r.status();
  if (r.ok()) {
    stats_ = r->stats;
    last_ = *r;
    return {r->value, r->logdet};
  }
  last_ = CnfResult{};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return {Tensor::Full(x.shape(), nan), Tensor::Full({x.dim(0)}, nan)};
}

FlowResult Cnf::Forward(const Tensor& x, const Tensor& context) const {
  FT_CHECK(!context.defined(), "cnf: conditioning is not supported");
  return Run(x, true);
}

FlowResult Cnf::Inverse(const Tensor& z, const Tensor& context) const {
  FT_CHECK(!context.defined(), "cnf: conditioning is not supported");
  return Run(z, false);
}

}  // namespace flowtape::flows

namespace flowtape::flows {

std::shared_ptr<Cnf> MakeFfjord(int64_t dim, const std::vector<int64_t>& hidden,
                                bool rnode, Rng& rng) {
  CnfOptions o;
  if (rnode) {
    o.lambda_kinetic = o.lambda_jacobian = 0.01;
    o.regularizer_units = RegularizerUnits::kPerDimMean;
  }
  if (dim > 8) o.trace = TraceEstimator::kHutchinson;
  return std::make_shared<Cnf>(std::make_shared<ConcatSquashNet>(
                                   dim, hidden, nn::Activation::kTanh, rng),
                               o);
}

}  // namespace flowtape::flows
