#include "flows/cnf/cnf.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows::cnf {
namespace {

// What the augmented field depends on besides (t, state).
struct FieldInputs {
  const CnfDynamics* f;
  Tensor eps;  // Hutchinson noise [N, d], or undefined (exact trace)
  bool regularize;
  Tensor context;  // [N, K] or undefined
  Tensor sqrt_t;   // learnable T's parameter, or undefined (fixed T)
};

// The augmented field [f, tr J, |f|^2, |J|_F^2] on states [N, d + 1 (+2)];
// with a learnable T, T times that field at time t * T (rescaled time).
// With `build`, the result is a differentiable graph (create_graph VJPs).
Tensor Field(const FieldInputs& in, double t, const Tensor& s, bool build) {
  const CnfDynamics& f = *in.f;
  const int64_t d = f.dim();
  Tensor z = Narrow(s, 1, 0, d);
  if (!build || !z.requires_grad()) z = z.Detach().set_requires_grad(true);
  Tensor scale, fz;
  if (in.sqrt_t.defined()) {
    scale = Square(in.sqrt_t);  // T
    fz = f(scale * t, z, in.context);
  } else if (in.context.defined()) {
    fz = f(Tensor::Scalar(t), z, in.context);
  } else {
    fz = f(t, z);
  }
  Tensor tr, frob;
  if (in.eps.defined()) {
    Tensor g = Grad({fz}, {z}, {in.eps}, build)[0];  // eps' J
    tr = Sum(g * in.eps, 1, true);
    if (in.regularize) frob = Sum(Square(g), 1, true);
  } else {
    for (int64_t i = 0; i < d; ++i) {
      Tensor e = Tensor::Zeros(z.shape());
      double* pe = e.mutable_data();
      for (int64_t k = 0; k < z.dim(0); ++k) pe[k * d + i] = 1.0;
      Tensor row = Grad({fz}, {z}, {e}, build)[0];  // e_i' J
      Tensor di = Narrow(row, 1, i, 1);
      tr = tr.defined() ? tr + di : di;
      if (in.regularize) {
        Tensor r2 = Sum(Square(row), 1, true);
        frob = frob.defined() ? frob + r2 : r2;
      }
    }
  }
  std::vector<Tensor> parts{fz, tr};
  if (in.regularize)
    parts.insert(parts.end(), {Sum(Square(fz), 1, true), frob});
  Tensor out = Concat(parts, 1);
  return scale.defined() ? out * scale : out;
}

// Recording on (adjoint VJPs, replay): the graph. Off: values, computed in
// a scratch region of the tape that is rewound before returning.
Tensor AugmentedField(const FieldInputs& in, double t, const Tensor& s) {
  if (Tape::Get().grad_enabled()) return Field(in, t, s, true);
  TapeScope scratch;
  EnableGradScope grad_on;
  return Field(in, t, s, false).Detach();
}

}  // namespace

Cnf::Cnf(std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options)
    : dynamics_(RegisterModule("dynamics", std::move(dynamics))),
      options_(options),
      rng_(options.seed) {
  if (options.train_t) {
    FT_CHECK(options.t_end > 0, "cnf: train_t needs t_end > 0, got ",
             options.t_end);
    sqrt_end_time_ = RegisterParameter(
        "sqrt_end_time", Tensor::Scalar(std::sqrt(options.t_end)));
  }
}

double Cnf::end_time() const {
  if (!sqrt_end_time_.defined()) return options_.t_end;
  const double r = sqrt_end_time_.item();
  return r * r;
}

std::string Cnf::name() const { return regularized() ? "rnode" : "ffjord"; }

bool Cnf::regularized() const {
  return options_.regularize || options_.lambda_kinetic > 0 ||
         options_.lambda_jacobian > 0;
}

absl::StatusOr<CnfResult> Cnf::Solve(const Tensor& x, bool forward,
                                     const Tensor& context) const {
  const int64_t d = dynamics_->dim(), k = dynamics_->context_dim();
  if (x.rank() != 2 || x.dim(1) != d)
    return absl::InvalidArgumentError(absl::StrCat(
        "cnf: input must be [N, ", d, "], got ", x.shape().ToString()));
  const int64_t n = x.dim(0);
  if (k == 0 && context.defined())
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: unconditional flow (context_dim 0) given a context ",
                     context.shape().ToString()));
  if (k > 0 && (!context.defined() || context.rank() != 2 ||
                context.dim(0) != n || context.dim(1) != k))
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: context must be [", n, ", ", k, "], got ",
                     context.defined() ? context.shape().ToString() : "none"));
  const bool reg = regularized();
  FieldInputs in{dynamics_.get(), Tensor(), reg, context, sqrt_end_time_};
  if (options_.trace == TraceEstimator::kHutchinson)
    in.eps = SampleNoise({n, d}, options_.noise, rng_);
  std::shared_ptr<CnfDynamics> dyn = dynamics_;  // keeps in.f alive
  ode::OdeFn field = [dyn, in](double t, const Tensor& s) {
    return AugmentedField(in, t, s);
  };
  // Everything the field depends on that may need gradients.
  std::vector<Tensor> params = dynamics_->Parameters();
  if (sqrt_end_time_.defined()) params.push_back(sqrt_end_time_);
  if (context.defined() && context.requires_grad()) params.push_back(context);
  Tensor s0 = Concat({x, Tensor::Zeros({n, reg ? 3 : 1})}, 1);
  // Fixed T: t in [0, T]. Learnable T: rescaled time s in [0, 1].
  const double t_end = sqrt_end_time_.defined() ? 1.0 : options_.t_end;
  std::vector<double> times = forward ? std::vector<double>{0.0, t_end}
                                      : std::vector<double>{t_end, 0.0};
  auto sol = ode::OdeSolve(field, s0, times, params, options_.ode);
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

FlowResult Cnf::Run(const Tensor& x, const Tensor& context,
                    bool forward) const {
  const int64_t d = dynamics_->dim(), k = dynamics_->context_dim();
  FT_CHECK(x.rank() == 2 && x.dim(1) == d, "cnf: input must be [N, ", d,
           "], got ", x.shape().ToString());
  FT_CHECK(k == 0 ? !context.defined()
                  : context.defined() && context.rank() == 2 &&
                        context.dim(0) == x.dim(0) && context.dim(1) == k,
           "cnf: context must be ", k == 0 ? "absent" : "[N, K]", " (K = ", k,
           ", N = ", x.dim(0), "), got ",
           context.defined() ? context.shape().ToString() : "none");
  auto r = Solve(x, forward, context);
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

FlowResult Cnf::Forward(const Tensor& x, const Tensor& context, Rng* /*rng*/) const {
  return Run(x, context, true);
}

FlowResult Cnf::Inverse(const Tensor& z, const Tensor& context, Rng* /*rng*/) const {
  return Run(z, context, false);
}

}  // namespace flowtape::flows::cnf

namespace flowtape::flows::cnf {

std::shared_ptr<Cnf> MakeFfjord(int64_t dim, const std::vector<int64_t>& hidden,
                                bool rnode, Rng& rng, int64_t context_dim,
                                bool train_t) {
  CnfOptions o;
  o.train_t = train_t;
  if (rnode) {
    o.lambda_kinetic = o.lambda_jacobian = 0.01;
    o.regularizer_units = RegularizerUnits::kPerDimMean;
  }
  if (dim > 8) o.trace = TraceEstimator::kHutchinson;
  return std::make_shared<Cnf>(
      std::make_shared<ConcatSquashNet>(dim, hidden, nn::Activation::kTanh, rng,
                                        context_dim),
      o);
}

}  // namespace flowtape::flows::cnf
