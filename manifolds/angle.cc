#include "manifolds/angle.h"

#include <cmath>

#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape::manifolds {

Tensor Atan2(const Tensor& y, const Tensor& x) {
  return MapBinary(
      "atan2", y, x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor y = c.input(0), x = c.input(1);
        Tensor inv = 1.0 / (Square(x) + Square(y));
        if (c.needs_grad(0))
          gin[0] = SumTo(GradMul(g, x * inv), c.input_shape(0));
        if (c.needs_grad(1))
          gin[1] = SumTo(GradMul(g, -y * inv), c.input_shape(1));
      },
      [](auto y, auto x) { return std::atan2(y, x); });
}

Tensor WrapAngle(const Tensor& theta) {
  return MapUnary(
      "wrap_angle", theta,
      [](const OpContext&, const Tensor& g, Tensor* gin) { gin[0] = g; },
      [](auto v) {
        using T = decltype(v);
        const T two_pi = static_cast<T>(kTwoPi);
        T r = v - two_pi * std::floor(v / two_pi);
        return (r >= two_pi || r < 0) ? T(0) : r;
      });
}

}  // namespace flowtape::manifolds
