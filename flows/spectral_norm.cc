#include "flows/spectral_norm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "nn/init.h"

namespace flowtape::flows {
namespace {

constexpr int kMaxSteps = 20000;  // power steps "to convergence" at most

// Normalises x in place; returns its former norm (0: left as is).
double Normalize(std::vector<double>& x) {
  double s = 0;
  for (double e : x) s += e * e;
  s = std::sqrt(s);
  if (s > 0)
    for (double& e : x) e /= s;
  return s;
}

// Writes v into t (its dtype), in place.
void Store(const std::vector<double>& v, Tensor t) {
  VisitDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    std::transform(v.begin(), v.end(), t.mutable_data<T>(),
                   [](double e) { return static_cast<T>(e); });
  });
}

}  // namespace

absl::StatusOr<std::shared_ptr<SpectralLinear>> SpectralLinear::Create(
    int64_t in, int64_t out, double c, Rng& rng) {
  if (in < 1 || out < 1 || !(c > 0 && std::isfinite(c)))
    return absl::InvalidArgumentError(
        absl::StrCat("spectral_linear: need in, out >= 1 and 0 < c < inf, got ",
                     in, ", ", out, ", ", c));
  return std::shared_ptr<SpectralLinear>(new SpectralLinear(in, out, c, rng));
}

SpectralLinear::SpectralLinear(int64_t in, int64_t out, double c, Rng& rng)
    : c_(c) {
  w_ = RegisterParameter("weight", nn::XavierUniform({in, out}, rng));
  b_ = RegisterParameter("bias", Tensor::Zeros({out}));
  std::vector<double> u = Tensor::Randn({in}, rng).ToVector(), v(out);
  Normalize(u);
  PowerIterate(u, v, /*iterations=*/-1);
  u_ = RegisterBuffer("u", Tensor::FromVector({in}, u));
  v_ = RegisterBuffer("v", Tensor::FromVector({out}, v));
}

double SpectralLinear::PowerIterate(std::vector<double>& u,
                                    std::vector<double>& v,
                                    int iterations) const {
  const int64_t m = w_.dim(0), n = w_.dim(1);
  const std::vector<double> w = w_.ToVector();
  auto step = [&] {
    std::fill(v.begin(), v.end(), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) v[j] += w[i * n + j] * u[i];
    if (Normalize(v) == 0) return 0.0;
    for (int64_t i = 0; i < m; ++i) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += w[i * n + j] * v[j];
      u[i] = s;
    }
    return Normalize(u);  // |W v| = u' W v with the new u
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
  std::vector<double> prev = u;
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
  std::vector<double> u = u_.ToVector(), v(v_.numel());
  return PowerIterate(u, v, -1);
}

void SpectralLinear::Refresh() const {
  std::vector<double> u = u_.ToVector(), v = v_.ToVector();
  PowerIterate(u, v, -1);
  Store(u, u_);
  Store(v, v_);
}

Tensor SpectralLinear::NormalizedWeight(SpectralMode mode,
                                        int iterations) const {
  Tensor u = u_, v = v_;
  if ((mode == SpectralMode::kTrain && Tape::Get().grad_enabled()) ||
      mode == SpectralMode::kConverged) {
    std::vector<double> uu = u_.ToVector(), vv = v_.ToVector();
    if (mode == SpectralMode::kTrain) {
      PowerIterate(uu, vv, iterations);
      Store(uu, u_);
      Store(vv, v_);
    } else {
      PowerIterate(uu, vv, -1);
      u = Tensor::FromVector(u_.shape(), uu, u_.dtype());
      v = Tensor::FromVector(v_.shape(), vv, v_.dtype());
    }
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
