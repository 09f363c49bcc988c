#include "flows/spectral_norm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/check.h"
#include "nn/init.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {

constexpr int kMaxSteps = 20000;  // power steps "to convergence" at most

// Normalises x[0..n) in place; returns its former norm (0: left as is).
double Normalize(double* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  s = std::sqrt(s);
  if (s > 0)
    for (int64_t i = 0; i < n; ++i) x[i] /= s;
  return s;
}

}  // namespace

SpectralLinear::SpectralLinear(int64_t in, int64_t out, double c, Rng& rng)
    : c_(c) {
  FT_CHECK(in > 0 && out > 0 && c > 0, "spectral_linear: in ", in, " out ", out,
           " c ", c);
  w_ = RegisterParameter("weight", nn::XavierUniform({in, out}, rng));
  b_ = RegisterParameter("bias", Tensor::Zeros({out}));
  u_ = RegisterBuffer("u", Tensor::Randn({in}, rng));
  v_ = RegisterBuffer("v", Tensor::Zeros({out}));
  Normalize(u_.mutable_data(), in);
  PowerIterate(u_.mutable_data(), v_.mutable_data(), /*iterations=*/-1);
}

double SpectralLinear::PowerIterate(double* u, double* v,
                                    int iterations) const {
  const int64_t m = w_.dim(0), n = w_.dim(1);
  const double* w = w_.data();
  auto step = [&] {
    for (int64_t j = 0; j < n; ++j) v[j] = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) v[j] += w[i * n + j] * u[i];
    if (Normalize(v, n) == 0) return 0.0;
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += w[i * n + j] * v[j];
      u[i] = s;
    }
    return Normalize(u, m);  // |W v| = u' W v with the new u
  };
  double sigma = 0;
  if (iterations >= 0) {
    for (int k = 0; k < iterations; ++k) sigma = step();
    return sigma;
  }
  // To convergence of the vectors, not of sigma: sigma's error is the square
  // of theirs, and d sigma / dW = u v' needs (u, v) themselves. The error
  // shrinks by (sigma_2 / sigma_1)^2 per step; stop when no entry of u moves
  // by more than 1e-15, or when the change sits at the rounding floor
  // (< 1e-13, no new minimum for 50 steps), or after kMaxSteps.
  std::vector<double> prev(u, u + m);
  double best = std::numeric_limits<double>::infinity();
  int since_best = 0;
  for (int k = 0; k < kMaxSteps; ++k) {
    sigma = step();
    double change = 0;
    for (int64_t i = 0; i < m; ++i) {
      change = std::max(change, std::fabs(u[i] - prev[i]));
      prev[i] = u[i];
    }
    if (change <= 1e-15) break;
    since_best = change < best ? 0 : since_best + 1;
    best = std::min(best, change);
    if (best < 1e-13 && since_best >= 50) break;
  }
  return sigma;
}

double SpectralLinear::ConvergedSigma() const {
  std::vector<double> u(u_.data(), u_.data() + u_.numel()), v(v_.numel());
  return PowerIterate(u.data(), v.data(), -1);
}

void SpectralLinear::Refresh() const {
  PowerIterate(u_.mutable_data(), v_.mutable_data(), -1);
}

Tensor SpectralLinear::NormalizedWeight(SpectralMode mode,
                                        int iterations) const {
  Tensor u = u_, v = v_;
  if (mode == SpectralMode::kTrain && Tape::Get().grad_enabled()) {
    PowerIterate(u_.mutable_data(), v_.mutable_data(), iterations);
  } else if (mode == SpectralMode::kConverged) {
    u = u_.Detach();
    v = v_.Detach();
    PowerIterate(u.mutable_data(), v.mutable_data(), -1);
  }
  const int64_t m = w_.dim(0), n = w_.dim(1);
  // sigma = u' W v with (u, v) constants: d sigma / dW = u v'.
  Tensor uv = MatMul(Reshape(u, {m, 1}), Reshape(v, {1, n}));
  Tensor sigma = Sum(w_ * uv);
  if (!(sigma.item() > c_)) return w_;
  return w_ * (c_ / sigma);
}

Tensor SpectralLinear::operator()(const Tensor& x, SpectralMode mode,
                                  int iterations) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == w_.dim(0), "spectral_linear: x ",
           x.shape().ToString(), " vs weight ", w_.shape().ToString());
  return MatMul(x, NormalizedWeight(mode, iterations)) + b_;
}

}  // namespace flowtape::flows
