// Angles on the circle S^1 = [0, 2 pi): the two ops flows on circles, tori
// and the sphere need that ops.h lacks.
//
//   Atan2(y, x) = the angle of the point (x, y) in (-pi, pi] (std::atan2),
//     d/dy = x / (x^2 + y^2),  d/dx = -y / (x^2 + y^2);
//     NumPy broadcasting; gradients of any order (the rule is written with
//     ops). At (0, 0) the value is 0 and the gradient NaN.
//   WrapAngle(theta) = theta - 2 pi floor(theta / (2 pi)), in [0, 2 pi) (a
//     value that rounds to 2 pi becomes 0); d/dtheta = 1 (the shift is a
//     locally constant multiple of 2 pi). "2 pi" is the input dtype's
//     nearest value to 2 pi.
#ifndef FLOWTAPE_MANIFOLDS_ANGLE_H_
#define FLOWTAPE_MANIFOLDS_ANGLE_H_

#include "autodiff/tensor.h"

namespace flowtape::manifolds {

inline constexpr double kTwoPi = 6.283185307179586476925286766559;

Tensor Atan2(const Tensor& y, const Tensor& x);
Tensor WrapAngle(const Tensor& theta);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_ANGLE_H_
