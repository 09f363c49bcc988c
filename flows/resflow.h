// Invertible residual block: i-ResNet (Behrmann et al. 2019) and Residual
// Flows (Chen et al. 2019), on vectors [N, D].
//
//   Forward (data -> base):  z = x + g(x)
//     g = L_K o act o ... o act o L_1, each L_k a SpectralLinear with
//     sigma(W_sn) <= c < 1 and act 1-Lipschitz (tanh, ELU, ...), so
//     Lip(g) <= c^K <= c < 1 and x -> x + g(x) is a bijection of R^D.
//     logdet = log det(I + J_g(x))   (> 0 determinant: eigenvalues of
//              I + J_g have real part >= 1 - c > 0)
//            = sum_{k>=1} (-1)^(k+1) / k tr(J_g^k)       (|J_g| < 1)
//   Inverse (base -> data): x = z - g(x), the Banach fixed point of
//     x_{j+1} = z - g(x_j) (error shrinks by c per step), iterated on the
//     values to `inverse_tol`; logdet = -(Forward logdet at x).
//
// Log-det estimators (LogdetEstimator):
//   kExact           log|det(I + J)| from the per-sample Jacobian (D VJPs,
//                    BatchJacobian; closed form for D <= 2, else Slogdet per
//                    sample). Exact and differentiable to any order. Small D.
//   kPowerSeries     i-ResNet: sum_{k=1..n} (-1)^(k+1)/k v' J^k v with one
//                    Hutchinson probe v per sample (E[v v'] = I) and v' J^k
//                    by k repeated VJPs. Unbiased for the TRUNCATED series
//                    (bias = the tail, |bias| <= D c^(n+1) / ((n+1)(1-c))).
//   kRussianRoulette Residual Flows: the first m terms as above, then a
//                    random number of further terms with reweighting,
//                      sum_{k=1..m+M} (-1)^(k+1)/k v' J^k v / P(m+M >= k),
//                    M ~ Geometric(p) (P(M >= j) = (1-p)^j) or Poisson(lam).
//                    Unbiased for the FULL series (log det itself), and its
//                    gradient is unbiased for the gradient of log det. The
//                    variance is finite when c^2 < 1 - p (geometric).
// The series are recorded with create_graph, so they train by backprop.
// exact_trace replaces the probe by all D unit vectors (deterministic traces).
// The probes and the roulette draw come from the `rng` argument of Forward /
// Inverse / Logdet: a random estimator given a null rng fails loudly.
//
// Gradients of the numeric inverse: when the call records on the tape,
// `newton_steps` Newton steps x <- x - (I + J_g(x))^-1 (x + g(x) - z) from
// the converged fixed point are recorded (per-sample Jacobian + Solve: meant
// for moderate D). The first gives the exact implicit-function derivative
// dx = (I + J)^-1 (dz - dg), the second makes second derivatives exact too.
// The fixed point stops when max |x_{j+1} - x_j| <= tol (1 + max |x|), tol =
// inverse_tol, or when it is 0 (the default) 1e-13 in float64 and 1e-6 in
// float32 (450 and 8 machine epsilons: the iteration's rounding floor is a
// few epsilons times 1 / (1 - c)). Non-finite z, divergence (a non-finite
// iterate, or the step growing 10 times in a row) or no convergence
// (possible only if sigma is underestimated, SpectralMode kTrain/kFrozen)
// is reported in FlowResult::status, with NaN values and log-det.
// Defaults: c = 0.9, ELU, SpectralMode kTrain (the bound is exact once the
// stored singular vectors have converged; kConverged recomputes them every
// call), kExact. The stored (u, v) are module buffers ("layer<k>.u/.v"), so
// a checkpoint round trip reproduces log-probs exactly in every SpectralMode.
// The context is ignored (not a conditioned family).
#ifndef FLOWTAPE_FLOWS_RESFLOW_H_
#define FLOWTAPE_FLOWS_RESFLOW_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/functional.h"
#include "flows/flow.h"
#include "flows/spectral_norm.h"
#include "nn/layers.h"

namespace flowtape::flows {

enum class LogdetEstimator { kExact, kPowerSeries, kRussianRoulette };
enum class RouletteDistribution { kGeometric, kPoisson };

struct ResidualOptions {
  int64_t dim = 2;
  std::vector<int64_t> hidden = {64, 64};
  nn::Activation activation = nn::Activation::kElu;
  double lipschitz = 0.9;  // c: sigma(W_sn) <= c per layer, in (0, 1)
  SpectralMode spectral = SpectralMode::kTrain;
  int power_iterations = 5;  // per recorded call in kTrain
  LogdetEstimator estimator = LogdetEstimator::kExact;
  int series_terms = 5;          // kPowerSeries: n
  int roulette_exact_terms = 2;  // kRussianRoulette: m
  RouletteDistribution roulette = RouletteDistribution::kGeometric;
  double roulette_param = 0.5;  // geometric p in (0, 1) / Poisson lam > 0
  Noise noise = Noise::kRademacher;
  // Series estimators with the D probes e_i instead of one random v:
  // sum_i e_i' J^k e_i = tr(J^k) exactly (D times the cost; tests, small D).
  bool exact_trace = false;
  double inverse_tol = 0;  // 0: the dtype's default (above)
  int inverse_max_iterations = 2000;
  int newton_steps = 2;
  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

class ResidualBlock : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<ResidualBlock>> Create(
      const ResidualOptions& o, Rng& rng);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "resflow"; }

  // g(x) with this call's normalised weights.
  Tensor Residual(const Tensor& x) const;
  // The log-det estimate at x with the given estimator (Forward's logdet);
  // `rng` as for Forward.
  Tensor Logdet(const Tensor& x, LogdetEstimator estimator,
                Rng* rng = nullptr) const;

  const ResidualOptions& options() const { return o_; }
  // Converges every layer's stored (u, v) for the current weights (after
  // editing weights by hand; checkpoints save and restore (u, v) as buffers,
  // so a loaded model computes the same sigma without this).
  void RefreshSpectralNorms() const {
    for (const auto& l : layers_) l->Refresh();
  }
  const std::vector<std::shared_ptr<SpectralLinear>>& layers() const {
    return layers_;
  }

 private:
  ResidualBlock(const ResidualOptions& o, Rng& rng);
  struct Net {  // normalised weights of one call
    std::vector<Tensor> w, b;
  };
  Net Weights() const;
  Tensor G(const Net& net, const Tensor& x) const;
  Tensor LogdetOf(const Net& net, const Tensor& x, LogdetEstimator e,
                  Rng* rng) const;
  Tensor SeriesLogdet(const Net& net, const Tensor& x, LogdetEstimator e,
                      bool create_graph, Rng* rng) const;
  // The fixed point x = z - g(x) (values) or a Status saying why not.
  absl::StatusOr<Tensor> FixedPoint(const Net& net, const Tensor& z) const;

  ResidualOptions o_;
  std::vector<std::shared_ptr<SpectralLinear>> layers_;
};

// `blocks` residual blocks, each preceded by ActNorm (Residual Flows' stack).
absl::StatusOr<std::shared_ptr<Flow>> ResidualFlow(const ResidualOptions& o,
                                                   int blocks, Rng& rng);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_RESFLOW_H_
