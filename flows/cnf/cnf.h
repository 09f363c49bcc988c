// Continuous normalizing flow (FFJORD, Grathwohl et al. 2019) with the RNODE
// optimal-transport regularisers (Finlay et al. 2020), optionally conditional
// and with a learnable integration time.
//
// The flow is the time-T map of dz/dt = f(t, z, c; theta), integrated
// together with the log-density change and, optionally, two regularisers:
//   dz/dt = f,   dl/dt = tr(df/dz),   dK/dt = |f|^2,   dJ/dt = |df/dz|_F^2
// from l = K = J = 0. Forward(x, c) (data -> base) solves t: 0 -> T from
// z = x and returns logdet = l(T) = int_0^T tr(df/dz) dt = log|det dz(T)/dx|.
// Inverse(z, c) solves t: T -> 0 and returns l(0) = -int tr = log|det dx/dz|.
//
// Context (conditional CNF): c [N, K], K = dynamics().context_dim(), is a
// per-sample input of f, constant in time (dynamics.h: concatenated to the
// hyper-net / MLP input). It is listed as an ODE parameter when it requires
// grad, so both gradient modes give dL/dc (the adjoint also when c is
// computed from listed parameters, ode/solve.h). K = 0: no context.
//
// Integration time: fixed by default (CnfOptions::t_end, integrated over
// [0, T] as above). With train_t (FFJORD's train_T), T = sqrt_end_time^2
// where sqrt_end_time is a parameter of the Cnf (initialised to
// sqrt(t_end)), and the solve runs in rescaled time s = t / T in [0, 1]:
//   d[z, l, K, J]/ds = T [f, tr(df/dz), |f|^2, |df/dz|_F^2] at t = s T,
// the same solution (z(s=1) = z(t=T), same l, K, J) with T an ordinary
// parameter of the field, so both gradient modes give dL/dT (including the
// path through f's time input, which therefore must be differentiable:
// TimeMlp and ConcatSquashNet are). Step sizes and tolerances then apply in
// s, so a train_t solve takes different steps than a fixed-T one.
//
// Trace estimators:
//   kExact:      d VJPs with the unit vectors e_i: tr = sum_i (e_i' J)_i and
//                |J|_F^2 = sum_i |e_i' J|^2 (exact).
//   kHutchinson: one VJP with noise eps (Gaussian or Rademacher, [N, d]),
//                tr ~ (eps' J) eps and |J|_F^2 ~ |eps' J|^2, both unbiased.
//                eps is drawn once per solve and reused by every evaluation,
//                forward and backward (the adjoint sees the same ODE).
// Regularisers (on when a weight is > 0 or `regularize` is set) are reported
// per sample as kinetic = K(T) = int |f|^2 dt and jacobian = J(T) =
// int |df/dz|_F^2 dt (the paper's equations; |t_end| times the time-mean).
// RNODE's loss is NLL + Regularization(), whose lambda units are chosen by
// CnfOptions::regularizer_units (d = dim):
//   kIntegral:   lambda_kinetic mean(K) + lambda_jacobian mean(J)
//                (the paper's equations as written);
//   kPerDimMean: lambda_kinetic mean(K) / (2 d) + lambda_jacobian mean(J) / d
//                (the reference code, cfinlay/ffjord-rnode, integrates
//                0.5 mean_i f_i^2 and mean_i (eps' df/dz)_i^2; the paper's
//                lambda = 0.01 is in these units).
// The same lambda is 2d (kinetic) and d (Jacobian) times stronger in
// kIntegral units than in kPerDimMean units.
// Gradients flow by the ODE options (adjoint by default, or discretise-then-
// optimise). If a solve fails (too many steps, blow-up) Forward/Inverse
// return NaN and last_status() holds the error; Solve returns it directly.
#ifndef FLOWTAPE_FLOWS_CNF_CNF_H_
#define FLOWTAPE_FLOWS_CNF_CNF_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/functional.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"
#include "flows/flow.h"
#include "ode/solve.h"

namespace flowtape::flows::cnf {

enum class TraceEstimator { kExact, kHutchinson };
// Units of lambda_kinetic / lambda_jacobian (see the header comment).
enum class RegularizerUnits { kIntegral, kPerDimMean };

struct CnfOptions {
  double t_end = 1.0;  // T (fixed), or the initial T with train_t
  // Learnable T = sqrt_end_time^2 (FFJORD's train_T; see the header comment).
  // Read at construction (t_end > 0 then): T lives in the parameter from
  // then on, so later changes to train_t, or to t_end with train_t, are
  // ignored.
  bool train_t = false;
  TraceEstimator trace = TraceEstimator::kExact;
  Noise noise = Noise::kGaussian;
  double lambda_kinetic = 0.0;
  double lambda_jacobian = 0.0;
  RegularizerUnits regularizer_units = RegularizerUnits::kIntegral;
  bool regularize = false;  // track K and J even with zero weights
  ode::OdeOptions ode = DefaultOde();
  uint64_t seed = 0;  // Hutchinson noise

  static ode::OdeOptions DefaultOde() {  // FFJORD's tolerances
    ode::OdeOptions o;
    o.rtol = 1e-5;
    o.atol = 1e-5;
    return o;
  }
};

struct CnfResult {
  Tensor value;     // [N, d]
  Tensor logdet;    // [N]
  Tensor kinetic;   // [N] (undefined without regularisers)
  Tensor jacobian;  // [N]
  std::shared_ptr<ode::OdeStats> stats;
};

class Cnf : public Flow {
 public:
  Cnf(std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options);

  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override;

  // forward: t 0 -> T (data -> base); else T -> 0. x must be [N, dim] and
  // the context [N, context_dim()] (undefined when context_dim() == 0);
  // InvalidArgument otherwise. Forward/Inverse abort on such shapes.
  absl::StatusOr<CnfResult> Solve(const Tensor& x, bool forward,
                                  const Tensor& context = Tensor()) const;
  // The weighted regularisers (scalar), in options().regularizer_units.
  Tensor Regularization(const CnfResult& r) const;

  const CnfOptions& options() const { return options_; }
  CnfOptions& mutable_options() { return options_; }
  const CnfDynamics& dynamics() const { return *dynamics_; }
  int64_t context_dim() const { return dynamics_->context_dim(); }
  // The integration time T: t_end, or sqrt_end_time^2 with train_t.
  double end_time() const;
  // The parameter behind a learnable T (undefined when T is fixed).
  const Tensor& sqrt_end_time() const { return sqrt_end_time_; }
  bool regularized() const;
  // Regularization() of the most recent Forward/Inverse (a scalar tape
  // tensor, valid until the tape is reset): lets a training loop that only
  // sees FlowModel::Nll add RNODE's terms. Zero without regularisers.
  Tensor LastRegularization() const { return Regularization(last_); }
  // Cost of the most recent solve (its backward counters fill in later).
  const std::shared_ptr<ode::OdeStats>& last_stats() const { return stats_; }
  const absl::Status& last_status() const { return status_; }

 private:
  FlowResult Run(const Tensor& x, const Tensor& context, bool forward) const;
  std::shared_ptr<CnfDynamics> dynamics_;
  CnfOptions options_;
  Tensor sqrt_end_time_;
  mutable Rng rng_;
  mutable std::shared_ptr<ode::OdeStats> stats_;
  mutable absl::Status status_;
  mutable CnfResult last_;
};

// FFJORD's configuration (Grathwohl et al. 2019): ConcatSquash dynamics with
// tanh, T = 1, rtol = atol = 1e-5, adjoint gradients; exact trace for
// dim <= 8, else Hutchinson with Gaussian noise (FFJORD's image setting);
// with `rnode`, RNODE's lambda_kinetic = lambda_jacobian = 0.01 in the
// reference code's units (kPerDimMean). context_dim > 0: a conditional CNF
// (the context enters ConcatSquash's hyper-nets); train_t: learnable T
// (FFJORD's train_T, on by default in some of its scripts; off here).
std::shared_ptr<Cnf> MakeFfjord(int64_t dim, const std::vector<int64_t>& hidden,
                                bool rnode, Rng& rng, int64_t context_dim = 0,
                                bool train_t = false);

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_CNF_H_
