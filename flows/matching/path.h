// Conditional probability paths of flow matching (Lipman et al. 2023): a
// path moves a noise point x0 (t = 0) to a data point x1 (t = 1), and its
// time derivative is the conditional target field the model regresses.
//
//   ProbabilityPath::Sample(x0 [N, d], x1 [N, d], t [N, 1]) -> (x_t, u_t),
//     x_t = psi_t(x0 | x1)  and  u_t = d/dt psi_t(x0 | x1),
// one time per row. Values are constants (no tape) in x0's dtype.
//
// AffinePath (Gaussian conditional paths): with scalars alpha_t, sigma_t,
//   x_t = alpha_t x1 + sigma_t x0,            (x0 ~ N(0, I): x_t | x1 is
//   u_t = alpha'_t x1 + sigma'_t x0            N(alpha_t x1, sigma_t^2 I))
// which, written at a point x (x0 = (x - alpha_t x1) / sigma_t), is the
// conditional field of the paper,
//   u_t(x | x1) = (sigma'_t / sigma_t) (x - alpha_t x1) + alpha'_t x1.
// Schedules:
//   OptimalTransport(sigma_min)   (Lipman eq. 20-21, "CondOT"):
//     alpha_t = t,  sigma_t = 1 - (1 - sigma_min) t,
//     x_t = (1 - (1 - sigma_min) t) x0 + t x1,
//     u_t = x1 - (1 - sigma_min) x0.
//   VariancePreserving(beta_min, beta_max, sigma_min)   (Lipman eq. 18-19,
//   the VP diffusion's path in flow-matching time, s = 1 - t):
//     T(s) = beta_min s + (beta_max - beta_min) s^2 / 2,  beta(s) = T'(s),
//     alpha_t = exp(-T(1 - t) / 2),       alpha'_t = alpha_t beta(1 - t) / 2,
//     sigma_t = sqrt(1 - (1 - sigma_min^2) alpha_t^2),
//     sigma'_t = -(1 - sigma_min^2) alpha_t alpha'_t / sigma_t.
//     sigma_min = 0 is the paper's path, whose speed diverges like
//     (1 - t)^(-1/2) at t = 1 (the regression target has infinite second
//     moment); sigma_min > 0 (required) floors sigma_1 = sigma_min so the
//     target stays finite. alpha_t^2 + sigma_t^2 = 1 + sigma_min^2 alpha_t^2
//     (variance preserving up to sigma_min^2). At t = 0, alpha_0 =
//     exp(-T(1)/2) (6.6e-3 for the defaults 0.1, 20), so x_0 is nearly N(0, I).
// Errors (InvalidArgument from the factories): OT sigma_min not in [0, 1);
// VP 0 < beta_min <= beta_max finite, sigma_min in (0, 1).
#ifndef FLOWTAPE_FLOWS_MATCHING_PATH_H_
#define FLOWTAPE_FLOWS_MATCHING_PATH_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::flows::matching {

struct PathSample {
  Tensor x;         // x_t [N, d]
  Tensor velocity;  // u_t [N, d]
};

class ProbabilityPath {
 public:
  virtual ~ProbabilityPath() = default;
  // x0, x1 [N, d] (same dtype), t [N, 1] (any dtype; values in [0, 1]).
  virtual PathSample Sample(const Tensor& x0, const Tensor& x1,
                            const Tensor& t) const = 0;
  virtual std::string name() const = 0;
};

class AffinePath : public ProbabilityPath {
 public:
  enum class Schedule { kOptimalTransport, kVariancePreserving };
  struct Coefficients {
    double alpha, sigma, dalpha, dsigma;  // alpha_t, sigma_t and d/dt
  };

  static absl::StatusOr<std::shared_ptr<AffinePath>> OptimalTransport(
      double sigma_min = 1e-4);
  static absl::StatusOr<std::shared_ptr<AffinePath>> VariancePreserving(
      double beta_min = 0.1, double beta_max = 20.0, double sigma_min = 1e-3);

  Coefficients At(double t) const;
  PathSample Sample(const Tensor& x0, const Tensor& x1,
                    const Tensor& t) const override;
  // u_t(x | x1) at points x [N, d] (needs sigma_t > 0).
  Tensor ConditionalField(const Tensor& x, const Tensor& x1,
                          const Tensor& t) const;
  std::string name() const override;
  Schedule schedule() const { return schedule_; }
  double sigma_min() const { return sigma_min_; }

 private:
  AffinePath(Schedule s, double beta_min, double beta_max, double sigma_min)
      : schedule_(s),
        beta_min_(beta_min),
        beta_max_(beta_max),
        sigma_min_(sigma_min) {}
  Schedule schedule_;
  double beta_min_, beta_max_, sigma_min_;
};

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_PATH_H_
