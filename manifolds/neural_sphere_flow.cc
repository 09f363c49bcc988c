#include "manifolds/neural_sphere_flow.h"

#include <cmath>
#include <vector>

#include "Eigen/Dense"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "manifolds/manifold.h"
#include "manifolds/volume_ratio.h"

namespace flowtape::manifolds {
namespace {
Tensor Col(const Tensor& x, int64_t j) { return Narrow(x, 1, j, 1); }
// Weight of the identity component of the z-map (keeps R > 0 at the poles).
constexpr double kFloor = 0.05;
}  // namespace

CylindricalCouplingFlow::CylindricalCouplingFlow(int64_t components,
                                                 int64_t hidden, Rng& rng)
    : k_(components) {
  z_net_ = RegisterModule(
      "z_net", std::make_shared<nn::MLP>(
                   std::vector<int64_t>{2, hidden, hidden, 3 * components},
                   nn::Activation::kTanh, rng, /*zero_last=*/true));
  phi_net_ = RegisterModule(
      "phi_net",
      std::make_shared<nn::MLP>(std::vector<int64_t>{1, hidden, hidden, 1},
                                nn::Activation::kTanh, rng,
                                /*zero_last=*/true));
  Eigen::MatrixXd g(3, 3);
  for (int i = 0; i < 9; ++i) g(i / 3, i % 3) = rng.Normal();
  Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ();
  rotation_ = FromRows(q);
}

Tensor CylindricalCouplingFlow::Map(const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == 3,
           "CylindricalCouplingFlow: needs [N, 3], got ", x.shape().ToString());
  Tensor x1 = Col(x, 0), x2 = Col(x, 1), z = Col(x, 2);
  Tensor r = Sqrt(Square(x1) + Square(x2));
  Tensor cs = Concat({x1 / r, x2 / r}, 1);
  Tensor h = (*z_net_)(cs);  // [N, 3K]
  Tensor w = Softmax(Narrow(h, 1, 0, k_), 1);
  Tensor m = Narrow(h, 1, k_, k_), l = Narrow(h, 1, 2 * k_, k_);
  // t = logit((z + 1) / 2); u' and 1 - u' are both sums of sigmoids, so
  // neither loses precision near the poles.
  Tensor t = Log1p(z) - Log1p(-z);
  Tensor a = (t - m) * (1.0 + Softplus(l));
  Tensor u2 = kFloor * Sigmoid(t) +
              (1.0 - kFloor) * Sum(w * Sigmoid(a), 1, /*keepdim=*/true);
  Tensor v2 = kFloor * Sigmoid(-t) +
              (1.0 - kFloor) * Sum(w * Sigmoid(-a), 1, /*keepdim=*/true);
  Tensor z2 = u2 - v2;
  Tensor r2 = 2.0 * Sqrt(u2 * v2);
  Tensor theta = (*phi_net_)(z2);
  Tensor ct = Cos(theta), st = Sin(theta);
  Tensor c2 = Col(cs, 0) * ct - Col(cs, 1) * st;
  Tensor s2 = Col(cs, 1) * ct + Col(cs, 0) * st;
  Tensor y = Concat({r2 * c2, r2 * s2, z2}, 1);
  return MatMulT(y, rotation_, false, true);
}

flows::FlowResult CylindricalCouplingFlow::Forward(const Tensor& x,
                                                   const Tensor&) const {
  Tensor logdet = LogVolumeRatio(
      Manifold::Sphere(3), [this](const Tensor& v) { return Map(v); }, x);
  return {Map(x), logdet};
}

flows::FlowResult CylindricalCouplingFlow::Inverse(const Tensor& y,
                                                   const Tensor&) const {
  const int64_t num = y.dim(0);
  Tensor x = Tensor::Empty({num, 3});
  {
    NoGradScope no_grad;
    Tensor v = MatMul(y.Detach(), rotation_);  // undo Q
    Tensor z2 = Col(v, 2);
    Tensor theta = (*phi_net_)(z2);
    Tensor r2 = Sqrt(Square(Col(v, 0)) + Square(Col(v, 1)));
    Tensor c2 = Col(v, 0) / r2, s2 = Col(v, 1) / r2;
    Tensor ct = Cos(theta), st = Sin(theta);
    Tensor c = c2 * ct + s2 * st, s = s2 * ct - c2 * st;  // rotate by -theta
    Tensor h = (*z_net_)(Concat({c, s}, 1));
    Tensor w = Softmax(Narrow(h, 1, 0, k_), 1);
    const double* pw = w.data();
    const double* ph = h.data();
    double* px = x.mutable_data();
    for (int64_t i = 0; i < num; ++i) {
      const double target = 0.5 * (z2.data()[i] + 1.0);
      auto cdf = [&](double t) {
        double acc = kFloor / (1.0 + std::exp(-t)), sum = 0.0;
        for (int64_t j = 0; j < k_; ++j) {
          const double m = ph[i * 3 * k_ + k_ + j];
          const double l = ph[i * 3 * k_ + 2 * k_ + j];
          const double scale = 1.0 + std::log1p(std::exp(l));
          sum += pw[i * k_ + j] / (1.0 + std::exp(-(t - m) * scale));
        }
        return acc + (1.0 - kFloor) * sum;
      };
      double lo = -80.0, hi = 80.0;
      for (int it = 0; it < 200 && hi - lo > 1e-14 * (1.0 + std::abs(lo));
           ++it) {
        const double mid = 0.5 * (lo + hi);
        (cdf(mid) < target ? lo : hi) = mid;
      }
      const double u = 1.0 / (1.0 + std::exp(-0.5 * (lo + hi)));
      const double z = 2.0 * u - 1.0, r = 2.0 * std::sqrt(u * (1.0 - u));
      px[i * 3 + 0] = r * c.data()[i];
      px[i * 3 + 1] = r * s.data()[i];
      px[i * 3 + 2] = z;
    }
  }
  Tensor logdet = -Forward(x).logdet.Detach();
  return {x, logdet};
}

}  // namespace flowtape::manifolds
