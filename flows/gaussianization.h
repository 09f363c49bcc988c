// Gaussianization flows (Meng, Song, Song & Ermon 2020, "Gaussianization
// Flows"), on vectors [N, D]: trainable kernel-density marginal
// Gaussianization layers alternating with trainable rotations.
//
// Marginal layer (MarginalGaussianization), per coordinate i, K kernels
// with anchors mu_ik and bandwidths h_ik = exp(log_h_ik), equal weights 1/K
// (a kernel density estimate whose anchors are learned), C the kernel's CDF:
//   F_i(x) = (1/K) sum_k C((x - mu_ik) / h_ik)           (a mixture CDF)
//   Forward(x):  z_i = Phi^-1(F_i(x_i))                  (Phi: N(0, 1) CDF)
//                logdet = sum_i log F_i'(x_i) - log phi(z_i)
//                  F_i'(x) = (1/K) sum_k c(u_k) / h_ik,  u_k = (x - mu_ik)/h_ik
//                  (c = C' the kernel's density),
//                  log phi(z) = -z^2 / 2 - log(2 pi) / 2
//   Inverse(z):  x_i solves Phi^-1(F_i(x_i)) = z_i (monotone_inverse.h:
//                bracketed Newton in float64, a failed entry is NaN and
//                `status` says why), logdet = -(the forward logdet at x).
// Kernels (GaussianizationKernel):
//   kGaussian (default; zuko's GF): C = Phi. Far from the anchors z is
//     asymptotically linear in x (slope 1 / max_k h_ik), so the model keeps
//     Gaussian tails through any number of layers.
//   kLogistic (the paper's choice, a closed-form CDF): C = sigmoid. Far from
//     the anchors log F ~ -|x| / h, so z grows like sqrt(2 |x| / h): each
//     layer makes the tails heavier (exponential after one layer, about
//     exp(-c |x|^(1/2)) after two, ...).
// Tails: everything is computed in log space, never from F itself:
//   log F = logsumexp_k log C(u_k) - log K,
//   log(1 - F) = logsumexp_k log C(-u_k) - log K     (C(-u) = 1 - C(u)),
//   z = NdtriExp(log F)          where F < 1/2,
//   z = -NdtriExp(log(1 - F))    otherwise,
// with log C = LogNdtr (Gaussian) or log sigmoid, so z and the log-det are
// accurate for any finite x, with no clipping.
// Anchors start at the normal quantiles Phi^-1((k + 1/2) / K) and
// bandwidths at Silverman's rule for a unit variance, h = 0.9 K^(-1/5)
// (times sqrt(3) / pi for the logistic, whose scale h gives a standard
// deviation pi h / sqrt(3)). In an initialisation pass (flow.h,
// InitializeFromData) a fresh layer sets them from the batch reaching it,
// once (an "initialized" buffer records it): mu_ik = the batch's
// (k + 1/2) / K quantile of coordinate i, h_ik the same rule with that
// coordinate's standard deviation.
//
// GaussianizationFlow: L marginal layers with a rotation between
// consecutive ones (a Householder product of D reflections, householder.h,
// in its Forward direction; logdet 0):
//   Forward: G_1, R_1, G_2, R_2, ..., R_{L-1}, G_L
// (zuko's GF has this layout with Gaussian kernels, its map computed as
// erfinv of a mean of erfs scaled by 1 - 1e-6; the log-space form above
// needs no such clip.)
// No context: the layers have no conditioner.
#ifndef FLOWTAPE_FLOWS_GAUSSIANIZATION_H_
#define FLOWTAPE_FLOWS_GAUSSIANIZATION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

// y = log Phi(x) elementwise (SciPy's log_ndtr), in float64: erfc down to
// x = -20, the asymptotic series of the Mills ratio below, so it stays
// finite and accurate for every finite x (within 2e-14 relative of a
// long-double reference from x = -1000 to 40). Derivative
// phi(x) / Phi(x) = exp(log phi(x) - y), written with ops (any order); its
// two terms cancel to O(log |x|) for x << 0, so it loses about
// x^2 / 2 ulps there (1e-10 relative at x = -1000).
Tensor LogNdtr(const Tensor& x);

// y = Phi^-1(exp(l)) elementwise for l <= 0, the normal quantile of a
// log-probability (SciPy's ndtri_exp): -inf at l = -inf, +inf at l = 0, NaN
// for l > 0 or NaN. Solved in float64 by Newton's method on log Phi (which
// is concave, so it converges from any start), with log Phi from erfc and,
// below -20, its asymptotic series: log Phi(y) = l to 4e-15 relative
// (tested down to l = -1e4), and y ~ -sqrt(2 |l|) down to l = -1e300.
// Derivative dy/dl = exp(l) / phi(y) =
// exp(l + y^2 / 2 + log(2 pi) / 2), written with ops (any order).
Tensor NdtriExp(const Tensor& l);

enum class GaussianizationKernel { kGaussian, kLogistic };

struct MarginalGaussianizationOptions {
  int64_t dim = 2;         // D
  int64_t components = 8;  // K kernels per coordinate
  GaussianizationKernel kernel = GaussianizationKernel::kGaussian;
  // InvalidArgument unless dim >= 1 and 1 <= components <= 4096.
  absl::Status Validate() const;
};

class MarginalGaussianization : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<MarginalGaussianization>> Create(
      const MarginalGaussianizationOptions& options);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "marginal_gaussianization"; }

  const Tensor& anchors() const { return mu_; }            // mu [D, K]
  const Tensor& log_bandwidths() const { return log_h_; }  // log h [D, K]
  bool initialized() const { return initialized_[0] != 0; }

 private:
  explicit MarginalGaussianization(const MarginalGaussianizationOptions& o);
  void Initialize(const Tensor& x) const;
  MarginalGaussianizationOptions o_;
  Tensor mu_, log_h_;
  Tensor initialized_;  // buffer: 1 once an initialisation pass has run
};

struct GaussianizationFlowOptions {
  int64_t dim = 2;         // D
  int64_t layers = 3;      // L marginal layers (L - 1 rotations)
  int64_t components = 8;  // K kernels per coordinate and layer
  GaussianizationKernel kernel = GaussianizationKernel::kGaussian;
  // InvalidArgument unless dim >= 1, 1 <= layers <= 4096 and
  // 1 <= components <= 4096.
  absl::Status Validate() const;
};

// The stack above (a Sequential); rotations drawn from rng (v_k ~ N(0, I)).
absl::StatusOr<std::shared_ptr<Flow>> GaussianizationFlow(
    const GaussianizationFlowOptions& options, Rng& rng);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_GAUSSIANIZATION_H_
