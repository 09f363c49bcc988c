#include "flows/cnf/cnf.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"

namespace flowtape::flows::cnf {
namespace {

// What the augmented field depends on besides (t, state).
struct FieldInputs {
  std::shared_ptr<const CnfDynamics> f;
  bool closed_form;  // tr from f.ValueAndTrace (kExact, no regularisers)
  Tensor eps;        // Hutchinson noise [N, d], or undefined (exact trace)
  // Exact trace: the seeds e_i, made once per pass (or per evaluation when
  // empty, above kUnitCacheBytes).
  std::vector<Tensor> units;
  bool regularize;
  Tensor context;  // [N, K] or undefined
  Tensor sqrt_t;   // learnable T's parameter, or undefined (fixed T)
};

// The exact trace's seeds are kept for a pass up to this size (d x [N, d]):
// a graph holds all d of them, and making them per evaluation costs d fresh
// [N, d] buffers per NFE (the products know their zeros, Tensor::UnitColumn,
// so a kept seed is read only where it is nonzero).
constexpr int64_t kUnitCacheBytes = int64_t{64} << 20;

// The augmented field [f, tr J, |f|^2, |J|_F^2] on states [N, d + 1 (+2)];
// with a learnable T, T times that field at time t * T (rescaled time).
// With `build`, the result is a differentiable graph (create_graph VJPs).
Tensor Field(const FieldInputs& in, double t, const Tensor& s, bool build) {
  const CnfDynamics& f = *in.f;
  const int64_t d = f.dim(), n = s.dim(0);
  const DType dtype = s.dtype();
  Tensor z = Narrow(s, 1, 0, d);
  // The VJPs differentiate w.r.t. z (the closed-form trace needs none): a
  // leaf unless the graph is being built through it. Narrow of a constant
  // state is already a fresh constant.
  if (!in.closed_form && (!build || !z.requires_grad())) {
    if (!z.is_constant()) z = z.Detach();
    z.set_requires_grad(true);
  }
  Tensor scale, time;  // time: t as a tensor, or undefined (double t)
  if (in.sqrt_t.defined()) {
    scale = Square(in.sqrt_t);  // T
    time = scale * t;
  } else if (in.context.defined() || in.closed_form) {
    time = Tensor::Scalar(t, dtype);
  }
  Tensor fz, tr, frob;
  if (in.closed_form) {
    fz = f.ValueAndTrace(time, z, in.context, &tr);
  } else {
    fz = time.defined() ? f(time, z, in.context) : f(t, z);
    if (in.eps.defined()) {
      Tensor g = Grad({fz}, {z}, {in.eps}, build)[0];  // eps' J
      tr = Sum(g * in.eps, 1, true);
      if (in.regularize) frob = Sum(Square(g), 1, true);
    } else {
      for (int64_t i = 0; i < d; ++i) {
        Tensor e =
            in.units.empty() ? Tensor::UnitColumn(n, d, i, dtype) : in.units[i];
        // e_i' J: the whole row for |J|_F^2, else its entry i alone.
        Tensor di;
        if (in.regularize) {
          Tensor row = Grad({fz}, {z}, {e}, build)[0];
          Tensor r2 = Sum(Square(row), 1, true);
          frob = frob.defined() ? frob + r2 : r2;
          di = Narrow(row, 1, i, 1);
        } else {
          di = GradColumns({fz}, z, i, 1, {e}, build);
        }
        tr = tr.defined() ? tr + di : di;
      }
    }
  }
  std::vector<Tensor> parts{fz, tr};
  if (in.regularize)
    parts.insert(parts.end(), {Sum(Square(fz), 1, true), frob});
  Tensor out = Concat(parts, 1);
  return scale.defined() ? out * scale : out;
}

// f alone (Transport): with a learnable T, T f(t T, z) in rescaled time.
Tensor MapField(const FieldInputs& in, double t, const Tensor& z) {
  if (!in.sqrt_t.defined() && !in.context.defined()) return (*in.f)(t, z);
  Tensor scale = in.sqrt_t.defined() ? Square(in.sqrt_t) : Tensor();
  Tensor time = scale.defined() ? scale * t : Tensor::Scalar(t, z.dtype());
  Tensor fz = (*in.f)(time, z, in.context);
  return scale.defined() ? fz * scale : fz;
}

// Recording on (adjoint VJPs, replay): the graph. Off: values, for the
// solver's value field (ode/adjoint.h ValueField), which reads the result
// inside its own TapeScope: the VJPs record there, the closed-form trace
// records nothing.
Tensor AugmentedField(const FieldInputs& in, double t, const Tensor& s) {
  if (Tape::Get().grad_enabled() || in.closed_form)
    return Field(in, t, s, Tape::Get().grad_enabled());
  EnableGradScope grad_on;
  return Field(in, t, s, false);
}

absl::Status CheckShapes(const Tensor& x, const Tensor& context, int64_t d,
                         int64_t k) {
  if (x.rank() != 2 || x.dim(1) != d)
    return absl::InvalidArgumentError(absl::StrCat(
        "cnf: input must be [N, ", d, "], got ", x.shape().ToString()));
  if (k == 0 && context.defined())
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: unconditional flow (context_dim 0) given a context ",
                     context.shape().ToString()));
  if (k > 0 && (!context.defined() || context.rank() != 2 ||
                context.dim(0) != x.dim(0) || context.dim(1) != k))
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: context must be [", x.dim(0), ", ", k, "], got ",
                     context.defined() ? context.shape().ToString() : "none"));
  return absl::OkStatus();
}

FlowResult Failed(const Tensor& x, absl::Status status) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  FlowResult r(Tensor::Full(x.shape(), nan, x.dtype()),
               Tensor::Full({x.rank() > 0 ? x.dim(0) : 1}, nan, x.dtype()));
  r.status = std::move(status);
  return r;
}

}  // namespace

absl::Status CnfOptions::Validate() const {
  if (!std::isfinite(t_end) || t_end == 0)
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: t_end must be finite and nonzero, got ", t_end));
  if (train_t && !(t_end > 0))
    return absl::InvalidArgumentError(
        absl::StrCat("cnf: train_t needs t_end > 0, got ", t_end));
  if (!(lambda_kinetic >= 0) || !std::isfinite(lambda_kinetic) ||
      !(lambda_jacobian >= 0) || !std::isfinite(lambda_jacobian))
    return absl::InvalidArgumentError(absl::StrCat(
        "cnf: lambda_kinetic and lambda_jacobian must be finite and >= 0, "
        "got ",
        lambda_kinetic, ", ", lambda_jacobian));
  return ode.Validate();
}

absl::StatusOr<std::shared_ptr<Cnf>> Cnf::Create(
    std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options) {
  if (dynamics == nullptr)
    return absl::InvalidArgumentError("cnf: null dynamics");
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<Cnf>(new Cnf(std::move(dynamics), options));
}

Cnf::Cnf(std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options)
    : dynamics_(RegisterModule("dynamics", std::move(dynamics))),
      options_(options) {
  if (options.train_t)
    sqrt_end_time_ = RegisterParameter(
        "sqrt_end_time", Tensor::Scalar(std::sqrt(options.t_end)));
}

double Cnf::end_time() const {
  if (!sqrt_end_time_.defined()) return options_.t_end;
  const double r = sqrt_end_time_.item();
  return r * r;
}

std::string Cnf::name() const {
  if (!options_.name.empty()) return options_.name;
  return regularized() ? "rnode" : "ffjord";
}

bool Cnf::regularized() const {
  return options_.regularize || options_.lambda_kinetic > 0 ||
         options_.lambda_jacobian > 0;
}

FlowResult Cnf::Run(const Tensor& x, const Tensor& context, bool forward,
                    bool density, Rng* rng) const {
  const int64_t d = dynamics_->dim();
  if (absl::Status s = CheckShapes(x, context, d, dynamics_->context_dim());
      !s.ok())
    return Failed(x, std::move(s));
  const int64_t n = x.dim(0);
  const DType dtype = x.dtype();
  const bool reg = density && regularized();
  const bool closed_form = options_.trace == TraceEstimator::kExact && !reg &&
                           dynamics_->has_closed_form_trace();
  FieldInputs in{dynamics_, closed_form, Tensor(),      {},
                 reg,       context,     sqrt_end_time_};
  if (density && options_.trace != TraceEstimator::kHutchinson &&
      !closed_form &&
      n * d * d * static_cast<int64_t>(DTypeSize(dtype)) <= kUnitCacheBytes)
    for (int64_t i = 0; i < d; ++i)
      in.units.push_back(Tensor::UnitColumn(n, d, i, dtype));
  if (density && options_.trace == TraceEstimator::kHutchinson) {
    FT_CHECK(rng != nullptr,
             "cnf: the Hutchinson trace needs an Rng: pass one to "
             "Forward/Inverse (FlowModel::LogProb/Nll/Score take it too)");
    in.eps = SampleNoise({n, d}, options_.noise, *rng, dtype);
  }
  ode::OdeFn field = [in, density](double t, const Tensor& s) {
    return density ? AugmentedField(in, t, s) : MapField(in, t, s);
  };
  // Everything the field depends on that may need gradients.
  std::vector<Tensor> params = dynamics_->Parameters();
  if (sqrt_end_time_.defined()) params.push_back(sqrt_end_time_);
  if (context.defined() && context.requires_grad()) params.push_back(context);
  Tensor s0 =
      density ? Concat({x, Tensor::Zeros({n, reg ? 3 : 1}, dtype)}, 1) : x;
  // Fixed T: t in [0, T]. Learnable T: rescaled time s in [0, 1].
  const double t_end = sqrt_end_time_.defined() ? 1.0 : options_.t_end;
  std::vector<double> times = forward ? std::vector<double>{0.0, t_end}
                                      : std::vector<double>{t_end, 0.0};
  auto sol = ode::OdeSolve(field, s0, times, params, options_.ode);
  if (!sol.ok()) return Failed(x, sol.status());
  const Tensor& s = sol->ys[1];
  FlowResult r(density ? Narrow(s, 1, 0, d) : s,
               density ? Reshape(Narrow(s, 1, d, 1), {n}) : Tensor());
  if (reg) {
    Tensor kinetic = Reshape(Narrow(s, 1, d + 1, 1), {n});
    Tensor jacobian = Reshape(Narrow(s, 1, d + 2, 1), {n});
    r.AddExtra(kKinetic, kinetic);
    r.AddExtra(kJacobian, jacobian);
    const bool per_dim =
        options_.regularizer_units == RegularizerUnits::kPerDimMean;
    const double wk = options_.lambda_kinetic / (per_dim ? 2.0 * d : 1.0);
    const double wj = options_.lambda_jacobian / (per_dim ? 1.0 * d : 1.0);
    if (wk > 0 || wj > 0) {
      Tensor penalty = wk > 0 ? kinetic * wk : Tensor();
      if (wj > 0)
        penalty = penalty.defined() ? penalty + jacobian * wj : jacobian * wj;
      r.AddExtra(kRegularization, penalty);
    }
  }
  const ode::SolverCounters& c = sol->forward;
  r.AddExtra(kNfe, Tensor::Full({n}, static_cast<double>(c.nfe), dtype));
  r.AddExtra(kAcceptedSteps,
             Tensor::Full({n}, static_cast<double>(c.accepted), dtype));
  r.AddExtra(kRejectedSteps,
             Tensor::Full({n}, static_cast<double>(c.rejected), dtype));
  return r;
}

FlowResult Cnf::Forward(const Tensor& x, const Tensor& context,
                        Rng* rng) const {
  return Run(x, context, true, true, rng);
}

FlowResult Cnf::Inverse(const Tensor& z, const Tensor& context,
                        Rng* rng) const {
  return Run(z, context, false, true, rng);
}

FlowResult Cnf::Transport(const Tensor& x, const Tensor& context,
                          bool forward) const {
  return Run(x, context, forward, false, nullptr);
}

absl::StatusOr<std::shared_ptr<Cnf>> MakeFfjord(
    int64_t dim, const std::vector<int64_t>& hidden, bool rnode, Rng& rng,
    int64_t context_dim, bool train_t) {
  CnfOptions o;
  o.train_t = train_t;
  if (rnode) {
    o.lambda_kinetic = o.lambda_jacobian = 0.01;
    o.regularizer_units = RegularizerUnits::kPerDimMean;
  }
  if (dim > 8) o.trace = TraceEstimator::kHutchinson;
  FT_ASSIGN_OR_RETURN(
      std::shared_ptr<ConcatSquashNet> net,
      ConcatSquashNet::Create(dim, hidden, nn::Activation::kTanh, rng,
                              context_dim));
  return Cnf::Create(std::move(net), o);
}

}  // namespace flowtape::flows::cnf
