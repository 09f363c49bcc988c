// The float32 tolerances of the tests, in one place.
//
// A float32 result is checked against its float64 twin: the same
// computation on the same inputs (rounded to float32 first, so both dtypes
// see one set of numbers). eps = 2^-23 ~ 1.19e-7 is float32's machine
// epsilon (float64's, 2^-52, is far below every float32 error). Errors are
// relative to the float64 reference b:
//   Float32Err(a, b) = |a - b| / (1 + |b|)        (NaN on either side: +inf)
// and the tolerances, for an entry into which d independent roundings mix
// and a condition factor k (1 unless the map amplifies rounding; stated at
// the use with its reason), are
//   Float32Tol(d, k)    = k 2^10 eps sqrt(d)   ~ 1.2e-4 k sqrt(d)
//     every op rounds with a relative error <= eps / 2; an entry goes
//     through one to hundreds of them (an op and its backward rule, up to
//     the conditioner layers and steps of a flow), and a d-term mixing (dot
//     products, reductions, rotations, Jacobian rows) adds d independent
//     roundings, which grow like sqrt(d). The worst relative error measured
//     over the flow harness's cases is ~100 eps sqrt(d): 2^10 leaves a 10x
//     margin; a single op is ~eps.
//   Float32SumTol(d, k) = k 2^10 eps d          ~ 1.2e-4 k d
//     a sum of d terms that each carry a value's error, without
//     cancellation in the worst case (a flow's log-det: D per-entry terms).
// Users: the flow harness (tests/flows/harness.h, Float32Tolerances), the
// ops, functional transforms, optimizers and modules (tests/autodiff/
// dtype_test.cc, tests/nn).
#ifndef FLOWTAPE_TESTS_FLOAT32_TOLERANCE_H_
#define FLOWTAPE_TESTS_FLOAT32_TOLERANCE_H_

#include <cmath>

namespace flowtape::testing {

inline constexpr double kFloat32Eps = 1.0 / (1 << 23);
inline constexpr double kFloat32Budget = 1024 * kFloat32Eps;  // 2^10 eps

inline double Float32Tol(double d = 1, double k = 1) {
  return k * kFloat32Budget * std::sqrt(d);
}
inline double Float32SumTol(double d, double k = 1) {
  return k * kFloat32Budget * d;
}
inline double Float32Err(double a, double b) {
  const double e = std::fabs(a - b) / (1 + std::fabs(b));
  return std::isnan(e) ? INFINITY : e;
}

}  // namespace flowtape::testing

#endif  // FLOWTAPE_TESTS_FLOAT32_TOLERANCE_H_
