// Stochastic layers of a stochastic normalizing flow (Wu, Koehler & Noe 2020,
// "Stochastic Normalizing Flows"): Markov kernels K(y' | y) for an energy u
// (flows/energies.h), placed between deterministic flow layers. A layer maps
// y_{t-1} -> y_t by a random step and returns, in FlowResult::logdet, its
// contribution to the path log-weight
//   dS_t = log q_b(y_{t-1} | y_t) - log q_f(y_t | y_{t-1})
// which takes the place of a deterministic layer's log|det dy_t/dy_{t-1}|.
// For a whole SNF z = y_0 -> ... -> y_T = x (generative direction):
//   log w = -u_target(x) - log p0(z) + sum_t dS_t
// and E[exp(log w)] = Z exactly (Crooks / Jarzynski): importance weights
// without marginalising the noise. FlowModel::SampleWithLogProb's log_prob
// = log p0(z) - sum_t dS_t, so reverse-KL training against exp(-u)
// (training/reverse_kl.h) minimises the path KL E[log_prob + u(x)] + log Z,
// an upper bound on KL(q(x) || p(x)) of the marginal q.
//
// The logdet of these layers is therefore a STOCHASTIC quantity (it depends
// on the noise drawn), not a function of the input. `rng` is required (a null
// rng fails loudly) and is the only source of randomness.
//
// The kernels (per row, x [N, D], D = energy dim, eps = step_size):
//   Langevin (unadjusted, ULA): y = x - eps grad u(x) + sqrt(2 eps) xi,
//     xi ~ N(0, I). q_f(y | x) = N(y; x - eps grad u(x), 2 eps I) and the
//     backward step is the same kernel, so with the backward noise
//     xi~ = (x - y + eps grad u(y)) / sqrt(2 eps):
//       dS = (|xi|^2 - |xi~|^2) / 2.
//     ULA's stationary density is exp(-u) only as eps -> 0; dS accounts for
//     the difference exactly (the weights stay unbiased for any eps).
//   Langevin, Metropolis-adjusted (MALA): the ULA step is a proposal,
//     accepted with probability min(1, exp(u(x) - u(y) + dS_ULA)); the kernel
//     satisfies detailed balance for exp(-u), so
//       dS = u(y_out) - u(x)   (0 on rejection).
//   Metropolis-Hastings random walk: proposal y = x + scale * xi, accepted
//     with probability min(1, exp(u(x) - u(y))); dS = u(y_out) - u(x) by
//     detailed balance (the energy-difference convention of the paper's
//     code; normflows' MetropolisHastings uses the same).
// `steps` kernel steps per layer; dS sums over them. Rows whose proposal
// energy is NaN reject it. The per-sample number of accepted proposals is
// the extra "mcmc_accepted" (ULA accepts every step).
//
// Direction: Inverse(y) is the generative step y_{t-1} -> y_t above and
// returns dS_t. Forward(y) is the reverse-direction stochastic step: it
// draws y_{t-1} ~ q_b(. | y_t) and returns log q_f(y_t | y_{t-1}) -
// log q_b(y_{t-1} | y_t), the normalizing-direction counterpart of
// log|det dz/dx|: exp(log p0(z) + sum of Forward logdets) is an unbiased
// estimate of the SNF's marginal density q(x), so FlowModel::LogProb is a
// stochastic estimate of log q(x), low in expectation (Jensen). These kernels
// are their own backward kernels, so Forward and Inverse run the same step and
// return the same formula with input and output in the roles above. The
// layers are not bijections (Forward(Inverse(y)) != y): analytic_inverse()
// is false and they do not belong in the bijection harness.
//
// Gradients: the step is reparametrised (xi and the accept decisions are
// constants); y depends on x and, through grad u with recording on, on the
// second derivatives of u. The accept decisions' own dependence on the
// parameters upstream is not differentiated (a biased but low-variance
// pathwise gradient, as in the paper's code and normflows).
//
// Trainable step size (LangevinOptions::learn_step_size): eps = exp(a) with
// the scalar parameter a = "log_step_size" (starting at log step_size), so
// eps stays positive. For ULA the path weight is a smooth function of eps
// at fixed noise xi, which is drawn independently of eps:
//   d dS / d eps = d/d eps (|xi|^2 - |xi~(eps)|^2) / 2,
//   xi~ = (x - y + eps grad u(y)) / sqrt(2 eps),
//   y = x - eps grad u(x) + sqrt(2 eps) xi,
// and E_xi[d(log w)/d a] = d E[log w]/d a exactly (reparametrisation), so
// reverse-KL training learns eps without bias. For MALA the gradient is
// taken along the drawn accept decisions: y_out and dS = u(y_out) - u(x)
// move with eps through accepted proposals, but the score-function term
// E[f * d/d a log P(decisions | eps)], with P(accept) = min(1, alpha(eps)),
// is ignored (the same pathwise approximation as above; biased). Metropolis
// random-walk layers keep a fixed proposal scale: their weight depends on it
// only through the accept decisions and accepted positions, i.e. mostly
// through the ignored term. Without learn_step_size the layers have no
// trainable parameters.
#ifndef FLOWTAPE_FLOWS_STOCHASTIC_H_
#define FLOWTAPE_FLOWS_STOCHASTIC_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/energies.h"
#include "flows/flow.h"

namespace flowtape::flows {

struct LangevinOptions {
  EnergyPtr energy;
  double step_size = 0.01;  // eps
  int64_t steps = 1;
  bool metropolis_adjusted = false;  // MALA
  // eps = exp(log_step_size), a trainable parameter starting at step_size.
  bool learn_step_size = false;
  // InvalidArgument unless energy is set, eps is finite and > 0, steps >= 1.
  absl::Status Validate() const;
};

class LangevinLayer : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<LangevinLayer>> Create(
      const LangevinOptions& options);
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override;  // "langevin" or "mala"
  const LangevinOptions& options() const { return o_; }
  // The current eps (the parameter's value when learned).
  double step_size() const;

 private:
  explicit LangevinLayer(const LangevinOptions& o);
  // eps as a scalar in `dtype` (recorded when learned).
  Tensor StepSize(DType dtype) const;
  FlowResult Step(const char* op, const Tensor& x, Rng* rng) const;
  LangevinOptions o_;
  Tensor log_step_size_;  // parameter when learned, else undefined
};

struct MetropolisOptions {
  EnergyPtr energy;
  double proposal_scale = 0.3;  // random-walk standard deviation
  int64_t steps = 1;
  // InvalidArgument unless energy is set, scale is finite and > 0, steps >= 1.
  absl::Status Validate() const;
};

class MetropolisLayer : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<MetropolisLayer>> Create(
      const MetropolisOptions& options);
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "metropolis"; }
  const MetropolisOptions& options() const { return o_; }

 private:
  explicit MetropolisLayer(const MetropolisOptions& o) : o_(o) {}
  FlowResult Step(const char* op, const Tensor& x, Rng* rng) const;
  MetropolisOptions o_;
};

// The extra holding the number of accepted proposals per sample.
inline constexpr char kMcmcAccepted[] = "mcmc_accepted";

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_STOCHASTIC_H_
