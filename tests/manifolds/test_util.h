// Shared utilities for the manifold tests: random parameters, the options of
// the sphere and calibration maps, and a finite difference check of gradients
// w.r.t. a module's own parameters.
#ifndef FLOWTAPE_TESTS_MANIFOLDS_TEST_UTIL_H_
#define FLOWTAPE_TESTS_MANIFOLDS_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "Eigen/Dense"
#include "autodiff/grad.h"
#include "autodiff/tape.h"
#include "autodiff/tensor.h"
#include "manifolds/calibration.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_flows.h"
#include "nn/module.h"

namespace flowtape::manifolds::testing {

// Options of the maps on S^(n-1) (NormalizedAffine, -Translation, -Linear)
// and of the calibration maps of n classes: the identity plus parameter
// noise of scale `noise`.
inline NormalizedAffineOptions AffineOptions(int64_t n, double noise = 0.0) {
  NormalizedAffineOptions options;
  options.n = n;
  options.noise = noise;
  return options;
}

inline GeneralizedCalibrationOptions CalibrationOptions(int64_t n,
                                                        double noise = 0.0) {
  GeneralizedCalibrationOptions options;
  options.n = n;
  options.noise = noise;
  return options;
}

inline SimplexCalibrationOptions SimplexOptions(int64_t n) {
  SimplexCalibrationOptions options;
  options.n = n;
  return options;
}

// K mixture components per coupling, `hidden` units per hidden layer.
inline CylindricalCouplingFlowOptions CouplingOptions(int64_t components,
                                                      int64_t hidden) {
  CylindricalCouplingFlowOptions options;
  options.components = components;
  options.hidden = hidden;
  return options;
}

inline Eigen::MatrixXd RandomMatrix(int64_t r, int64_t c, Rng& rng) {
  Eigen::MatrixXd m(r, c);
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) m(i, j) = rng.Normal();
  return m;
}

inline Eigen::VectorXd RandomVector(int64_t n, Rng& rng) {
  return RandomMatrix(n, 1, rng).col(0);
}

// A well-conditioned random matrix: I + 0.4 G.
inline Eigen::MatrixXd RandomInvertible(int64_t n, Rng& rng) {
  return Eigen::MatrixXd::Identity(n, n) + 0.4 * RandomMatrix(n, n, rng);
}

// Worst relative error between d loss / d p (tape) and central differences,
// over every parameter p of `module`. loss() must return a scalar.
inline double ParameterGradientError(const nn::Module& module,
                                     const std::function<Tensor()>& loss,
                                     double h = 1e-6) {
  std::vector<Tensor> params = module.Parameters();
  std::vector<Tensor> grads;
  {
    TapeScope scope;
    grads = Grad({loss()}, params);
    for (Tensor& g : grads) g = g.Detach();
  }
  auto eval = [&] {
    TapeScope scope;
    NoGradScope no_grad;
    return loss().item();
  };
  double worst = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    double* v = params[i].mutable_data<double>();
    for (int64_t j = 0; j < params[i].numel(); ++j) {
      const double old = v[j];
      v[j] = old + h;
      const double fp = eval();
      v[j] = old - h;
      const double fm = eval();
      v[j] = old;
      const double fd = (fp - fm) / (2 * h);
      worst = std::max(
          worst, std::abs(grads[i][j] - fd) / std::max(1.0, std::abs(fd)));
    }
  }
  return worst;
}

}  // namespace flowtape::manifolds::testing

#endif  // FLOWTAPE_TESTS_MANIFOLDS_TEST_UTIL_H_
