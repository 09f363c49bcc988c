#include "manifolds/neural_sphere_flow.h"

#include <cmath>
#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "manifolds/manifold.h"
#include "manifolds/volume_ratio.h"

namespace flowtape::manifolds {
namespace {
Tensor Col(const Tensor& x, int64_t j) { return Narrow(x, 1, j, 1); }
// Weight of the identity component of the z-map (keeps R > 0 at the poles).
constexpr double kFloor = 0.05;
// Regularises the distance from the z-axis, r -> sqrt(r^2 + pole^2), so the
// map and its derivatives stay finite at the poles (see Map). pole^2 must be
// a normal number of the dtype: 1e-60 in float64, 1e-36 in float32 (whose
// smallest normal is 1.2e-38).
double Pole(DType dtype) { return dtype == kFloat32 ? 1e-18 : 1e-30; }
}  // namespace

absl::Status CylindricalCouplingFlowOptions::Validate() const {
  if (components < 1 || hidden < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("CylindricalCouplingFlow: components = ", components,
                     " and hidden = ", hidden, " must be >= 1"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<CylindricalCouplingFlow>>
CylindricalCouplingFlow::Create(const CylindricalCouplingFlowOptions& options,
                                Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<CylindricalCouplingFlow>(
      new CylindricalCouplingFlow(options, rng));
}

CylindricalCouplingFlow::CylindricalCouplingFlow(
    const CylindricalCouplingFlowOptions& options, Rng& rng)
    : k_(options.components) {
  const int64_t components = options.components, hidden = options.hidden;
  z_net_ = RegisterModule(
      "z_net",
      nn::MLP::Create(std::vector<int64_t>{2, hidden, hidden, 3 * components},
                      nn::Activation::kTanh, rng, /*zero_last=*/true)
          .value());
  phi_net_ = RegisterModule(
      "phi_net", nn::MLP::Create(std::vector<int64_t>{1, hidden, hidden, 1},
                                 nn::Activation::kTanh, rng,
                                 /*zero_last=*/true)
                     .value());
  Eigen::MatrixXd g(3, 3);
  for (int i = 0; i < 9; ++i) g(i / 3, i % 3) = rng.Normal();
  Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
  rotation_ = RegisterBuffer("rotation", FromRows(q));
}

Tensor CylindricalCouplingFlow::Map(const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == 3,
           "CylindricalCouplingFlow: needs [N, 3], got ", x.shape().ToString());
  Tensor x1 = Col(x, 0), x2 = Col(x, 1), z = Col(x, 2);
  // r_eps^2 = r^2 + pole^2: the same as r^2 to the last bit unless the point
  // is within ~1e-22 (float32: ~1e-14) of a pole, and never 0 (at the pole
  // cs = (0, 0)).
  const double pole = Pole(x.dtype());
  Tensor r2_eps = Square(x1) + Square(x2) + pole * pole;
  Tensor r = Sqrt(r2_eps);
  Tensor cs = Concat({x1 / r, x2 / r}, 1);
  Tensor h = (*z_net_)(cs);  // [N, 3K]
  Tensor w = Softmax(Narrow(h, 1, 0, k_), 1);
  Tensor m = Narrow(h, 1, k_, k_), l = Narrow(h, 1, 2 * k_, k_);
  // t = logit((z + 1) / 2) = log((1 + z) / (1 - z)), with the small one of
  // 1 -+ z taken as r^2 / (1 +- z) (on the sphere (1 - z)(1 + z) = r^2), so t
  // stays exact near the poles, where z rounds to +-1, and finite at them.
  // The clamps keep the unused branch finite.
  Tensor lr = Log(r2_eps);
  Tensor north = 2.0 * Log1p(Clamp(z, 0.0, 1.0)) - lr;
  Tensor south = lr - 2.0 * Log1p(-Clamp(z, -1.0, 0.0));
  Tensor up = Step(z);  // z > 0: northern branch
  Tensor t = Where(up, north, south);
  Tensor a = (t - m) * (1.0 + Softplus(l));
  // u' and v' = 1 - u' are both sums of sigmoids, so neither loses precision
  // near the poles; z' = u' - v' is formed from the small one of the two.
  Tensor u2 = kFloor * Sigmoid(t) +
              (1.0 - kFloor) * Sum(w * Sigmoid(a), 1, /*keepdim=*/true);
  Tensor v2 = kFloor * Sigmoid(-t) +
              (1.0 - kFloor) * Sum(w * Sigmoid(-a), 1, /*keepdim=*/true);
  Tensor z2 = Where(up, 1.0 - 2.0 * v2, 2.0 * u2 - 1.0);
  Tensor r2 = 2.0 * Sqrt(u2 * v2);
  Tensor theta = (*phi_net_)(z2);
  Tensor ct = Cos(theta), st = Sin(theta);
  Tensor c2 = Col(cs, 0) * ct - Col(cs, 1) * st;
  Tensor s2 = Col(cs, 1) * ct + Col(cs, 0) * st;
  Tensor y = Concat({r2 * c2, r2 * s2, z2}, 1);
  return MatMulT(y, rotation_, false, true);
}

flows::FlowResult CylindricalCouplingFlow::Forward(const Tensor& x,
                                                   const Tensor&,
                                                   Rng* /*rng*/) const {
  Tensor logdet = LogVolumeRatio(
      Manifold::Sphere(3), [this](const Tensor& v) { return Map(v); }, x);
  return {Map(x), logdet};
}

flows::FlowResult CylindricalCouplingFlow::Inverse(const Tensor& y,
                                                   const Tensor&,
                                                   Rng* /*rng*/) const {
  const int64_t num = y.dim(0);
  const double pole = Pole(y.dtype());
  std::vector<double> xs(num * 3);
  {
    NoGradScope no_grad;
    Tensor v = MatMul(y.Detach(), rotation_);  // undo Q
    Tensor z2 = Col(v, 2);
    Tensor theta = (*phi_net_)(z2);
    Tensor r2 = Sqrt(Square(Col(v, 0)) + Square(Col(v, 1)) + pole * pole);
    Tensor c2 = Col(v, 0) / r2, s2 = Col(v, 1) / r2;
    Tensor ct = Cos(theta), st = Sin(theta);
    Tensor c = c2 * ct + s2 * st, s = s2 * ct - c2 * st;  // rotate by -theta
    Tensor h = (*z_net_)(Concat({c, s}, 1));
    Tensor w = Softmax(Narrow(h, 1, 0, k_), 1);
    // The bisection runs in double whatever the dtype.
    const std::vector<double> wv = w.ToVector(), hv = h.ToVector(),
                              vv = v.ToVector(), cv = c.ToVector(),
                              sv = s.ToVector();
    const double* pw = wv.data();
    const double* ph = hv.data();
    double* px = xs.data();
    auto sigmoid = [](double a) { return 1.0 / (1.0 + std::exp(-a)); };
    for (int64_t i = 0; i < num; ++i) {
      // Solve v'(t) = 1 - u'(t) = target in the north (z' > 0), u'(t) =
      // target in the south, with the small one of u', v' from the radius:
      // v' = r'^2 / (2 (1 + z')), u' = r'^2 / (2 (1 - z')), so the poles
      // keep full relative precision.
      const double* vi = vv.data() + 3 * i;
      const double zi = vi[2], rsq = vi[0] * vi[0] + vi[1] * vi[1];
      const bool north = zi > 0;
      const double target = rsq / (2.0 * (1.0 + std::fabs(zi)));
      const double sign = north ? -1.0 : 1.0;  // v' uses sigmoids of -t
      auto cdf = [&](double t) {               // u'(t) (south) or v'(t) (north)
        double sum = 0.0;
        for (int64_t j = 0; j < k_; ++j) {
          const double m = ph[i * 3 * k_ + k_ + j];
          const double l = ph[i * 3 * k_ + 2 * k_ + j];
          const double scale = 1.0 + std::log1p(std::exp(l));
          sum += pw[i * k_ + j] * sigmoid(sign * (t - m) * scale);
        }
        return kFloor * sigmoid(sign * t) + (1.0 - kFloor) * sum;
      };
      double lo = -200.0, hi = 200.0;  // Map's |t| <= 2 log(2 / pole) < 140
      for (int it = 0; it < 300 && hi - lo > 1e-14 * (1.0 + std::abs(lo));
           ++it) {
        const double mid = 0.5 * (lo + hi);
        ((cdf(mid) < target) == north ? hi : lo) = mid;
      }
      const double t = 0.5 * (lo + hi);
      const double z = std::tanh(0.5 * t), r = 1.0 / std::cosh(0.5 * t);
      px[i * 3 + 0] = r * cv[i];
      px[i * 3 + 1] = r * sv[i];
      px[i * 3 + 2] = z;
    }
  }
  Tensor x = Tensor::FromVector({num, 3}, xs, y.dtype());
  Tensor logdet = -Forward(x).logdet.Detach();
  return {x, logdet};
}

}  // namespace flowtape::manifolds
