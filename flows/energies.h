// Energy: an unnormalised target density p~(x) = exp(-u(x)) on R^D, the
// target of reverse-KL training and the stationary density of the stochastic
// layers (flows/stochastic.h). Z = int exp(-u(x)) dx is unknown in general.
//
//   Value(x)    = u(x) per row, [N], for x [N, D]; built from ops, so it is
//                 differentiable in x (and in whatever x depends on) to any
//                 order.
//   Gradient(x) = grad_x u(x), [N, D], by the tape. With recording on it is
//                 recorded too (create_graph): a loss through a Langevin step
//                 x - eps grad u(x) differentiates through grad u (second
//                 derivatives of u). With recording off (NoGradScope) it is a
//                 constant, computed on a sub-tape that is rewound.
// Energies compute in x's dtype; their own constants are plain doubles.
//
// The energies here:
//   RezendeEnergy, U1-U4 of Rezende & Mohamed 2015 (Variational Inference
//   with Normalizing Flows, Table 1), z = (z1, z2):
//     w1 = sin(2 pi z1 / 4),  w2 = 3 exp(-((z1 - 1) / 0.6)^2 / 2),
//     w3 = 3 sigmoid((z1 - 1) / 0.3)
//     U1 = ((|z| - 2) / 0.4)^2 / 2
//          - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
//     U2 = ((z2 - w1) / 0.4)^2 / 2
//     U3 = -log(exp(-((z2 - w1) / 0.35)^2 / 2)
//               + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
//     U4 = -log(exp(-((z2 - w1) / 0.4)^2 / 2)
//               + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))
//     (log-sum-exps computed stably). U2-U4 do not grow along z1: exp(-U) is
//     improper on R^2. The paper shows them on [-4, 4]^2; ConfinedEnergy
//     makes them proper.
//   DoubleWellEnergy (the 2-D example of Wu, Koehler & Noe 2020, Stochastic
//   Normalizing Flows; constants from the paper's code, DoubleWellEnergy(2,
//   a=-0.5, b=-6) with c = 1):
//     u(x) = a x1 + b x1^2 + c x1^4 + |x_{2..D}|^2 / 2,  a = -0.5, b = -6,
//     c = 1: two wells near x1 = +-1.7, barrier ~ 9 kT, the right one deeper.
//   GaussianEnergy: u(x) = sum_i ((x_i - mu_i) / sigma_i)^2 / 2, with
//     log Z = (D / 2) log(2 pi) + sum_i log sigma_i (closed form).
//   InterpolatedEnergy: u_l(x) = (1 - l) u0(x) + l u1(x), l in [0, 1]: the
//     intermediate energies an SNF's stochastic layers sample between the
//     prior (u0 = |x|^2 / 2) and the target (u1).
//   ConfinedEnergy: u(x) + sum_i relu(|x_i| - a)^2 / (2 w^2): a soft wall
//     outside the box [-a, a]^D (zero inside; C^1).
#ifndef FLOWTAPE_FLOWS_ENERGIES_H_
#define FLOWTAPE_FLOWS_ENERGIES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::flows {

class Energy {
 public:
  virtual ~Energy() = default;
  virtual int64_t dim() const = 0;
  virtual std::string name() const = 0;
  // u(x), [N], for x [N, dim()].
  virtual Tensor Value(const Tensor& x) const = 0;

  // grad_x u(x), [N, dim()] (see the header comment for recording).
  Tensor Gradient(const Tensor& x) const;
  // {u(x), grad u(x)} from one evaluation.
  std::pair<Tensor, Tensor> ValueAndGradient(const Tensor& x) const;

 protected:
  // FT_CHECKs that x is [N, dim()].
  void CheckInput(const char* op, const Tensor& x) const;
};

using EnergyPtr = std::shared_ptr<const Energy>;

class RezendeEnergy : public Energy {
 public:
  enum class Kind { kU1, kU2, kU3, kU4 };
  explicit RezendeEnergy(Kind kind) : kind_(kind) {}
  // "u1".."u4" (any case); else InvalidArgument naming the name.
  static absl::StatusOr<std::shared_ptr<RezendeEnergy>> Create(
      const std::string& name);
  int64_t dim() const override { return 2; }
  std::string name() const override;  // "u1".."u4"
  Tensor Value(const Tensor& x) const override;
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct DoubleWellOptions {
  int64_t dim = 2;
  double a = -0.5, b = -6.0, c = 1.0;
  // InvalidArgument unless dim >= 1, c > 0 (else improper) and all finite.
  absl::Status Validate() const;
};

class DoubleWellEnergy : public Energy {
 public:
  static absl::StatusOr<std::shared_ptr<DoubleWellEnergy>> Create(
      const DoubleWellOptions& options);
  int64_t dim() const override { return o_.dim; }
  std::string name() const override { return "double_well"; }
  Tensor Value(const Tensor& x) const override;

 private:
  explicit DoubleWellEnergy(const DoubleWellOptions& o) : o_(o) {}
  DoubleWellOptions o_;
};

class GaussianEnergy : public Energy {
 public:
  // InvalidArgument unless mu and sigma are non-empty, of one size, finite,
  // and sigma > 0.
  static absl::StatusOr<std::shared_ptr<GaussianEnergy>> Create(
      std::vector<double> mu, std::vector<double> sigma);
  // The standard normal's energy |x|^2 / 2 on R^dim (an SNF's prior).
  static std::shared_ptr<GaussianEnergy> Standard(int64_t dim);
  int64_t dim() const override { return static_cast<int64_t>(mu_.size()); }
  std::string name() const override { return "gaussian"; }
  Tensor Value(const Tensor& x) const override;
  double LogNormalizer() const;  // (D / 2) log(2 pi) + sum log sigma

 private:
  GaussianEnergy(std::vector<double> mu, std::vector<double> sigma)
      : mu_(std::move(mu)), sigma_(std::move(sigma)) {}
  std::vector<double> mu_, sigma_;
};

class InterpolatedEnergy : public Energy {
 public:
  // InvalidArgument unless both are non-null, of one dim, and l in [0, 1].
  static absl::StatusOr<std::shared_ptr<InterpolatedEnergy>> Create(
      EnergyPtr u0, EnergyPtr u1, double lambda);
  int64_t dim() const override { return u1_->dim(); }
  std::string name() const override;
  Tensor Value(const Tensor& x) const override;

 private:
  InterpolatedEnergy(EnergyPtr u0, EnergyPtr u1, double lambda)
      : u0_(std::move(u0)), u1_(std::move(u1)), lambda_(lambda) {}
  EnergyPtr u0_, u1_;
  double lambda_;
};

class ConfinedEnergy : public Energy {
 public:
  // InvalidArgument unless inner is non-null, half_width > 0, wall > 0.
  static absl::StatusOr<std::shared_ptr<ConfinedEnergy>> Create(
      EnergyPtr inner, double half_width = 4.0, double wall = 0.1);
  int64_t dim() const override { return inner_->dim(); }
  std::string name() const override { return inner_->name() + "_confined"; }
  Tensor Value(const Tensor& x) const override;

 private:
  ConfinedEnergy(EnergyPtr inner, double half_width, double wall)
      : inner_(std::move(inner)), half_width_(half_width), wall_(wall) {}
  EnergyPtr inner_;
  double half_width_, wall_;
};

// log Z = log int_{[-lim, lim]^2} exp(-u(x)) dx by the midpoint rule on a
// grid x grid lattice, in float64 (stable log-sum-exp). InvalidArgument
// unless u is 2-D, lim > 0 and grid >= 1.
absl::StatusOr<double> LogNormalizer2D(const Energy& u, double lim = 4.0,
                                       int grid = 400);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_ENERGIES_H_
