#include "manifolds/circle_maps.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/rq_spline.h"
#include "manifolds/angle.h"

namespace flowtape::manifolds {
namespace {

constexpr double kPi = kTwoPi / 2;

flows::RqSplineOptions SplineOptions(const CircleMapOptions& o) {
  flows::RqSplineOptions s;
  s.bins = o.bins;
  s.bound = kPi;
  s.min_bin_width = o.min_bin_width;
  s.min_bin_height = o.min_bin_height;
  s.min_derivative = o.min_derivative;
  return s;
}

// [N, K] <-> [N, K, 1].
Tensor Unsqueeze(const Tensor& t) {
  return Reshape(t, {t.dim(0), t.dim(1), 1});
}
Tensor Squeeze(const Tensor& t) { return Reshape(t, {t.dim(0), t.dim(1)}); }

// The M Moebius centres w_j = a_j + i b_j, 1 - |w_j|^2 and the weights rho,
// each [N, K, M].
struct Mobius {
  Tensor a, b, one_minus, rho;
};

Mobius MakeMobius(const Tensor& params, int64_t m) {
  Tensor vx = Narrow(params, 2, 0, m), vy = Narrow(params, 2, m, m);
  Tensor q = 1.0 + Square(vx) + Square(vy);  // 1 + |v|^2
  Tensor s = 1.0 / Sqrt(q);
  Mobius r{vx * s, vy * s, 1.0 / q, Tensor()};
  if (m == 1) {
    r.rho = Tensor::Ones(r.a.shape(), params.dtype());
  } else {
    Tensor zero =
        Tensor::Zeros({params.dim(0), params.dim(1), 1}, params.dtype());
    r.rho = Softmax(Concat({zero, Narrow(params, 2, 2 * m, m - 1)}, 2), 2);
  }
  return r;
}

// The lift g(theta) and g'(theta), [N, K] each (theta [N, K], any real).
void MobiusLift(const Mobius& w, const Tensor& theta, Tensor* g, Tensor* dg) {
  Tensor th = Unsqueeze(theta);
  Tensor c = Cos(th), s = Sin(th);
  Tensor re = 1.0 - (w.a * c + w.b * s), im = w.b * c - w.a * s;  // q(theta)
  Tensor f = th - 2.0 * Atan2(im, re) + 2.0 * Atan2(w.b, 1.0 - w.a);
  *g = Sum(w.rho * f, 2);
  *dg = Sum(w.rho * w.one_minus / (Square(re) + Square(im)), 2);
}

// Solves g(theta) = t per entry by bisection in double.
absl::Status BisectMobius(const Mobius& w, const Tensor& t,
                          std::vector<double>* roots) {
  const int64_t n = t.numel(), m = w.a.dim(2);
  std::vector<double> a = w.a.ToVector(), b = w.b.ToVector(),
                      rho = w.rho.ToVector(), tv = t.ToVector();
  roots->assign(n, 0.0);
  for (int64_t e = 0; e < n; ++e) {
    const double* ae = a.data() + e * m;
    const double* be = b.data() + e * m;
    const double* re = rho.data() + e * m;
    auto g = [&](double x) {
      const double c = std::cos(x), s = std::sin(x);
      double sum = 0.0;
      for (int64_t j = 0; j < m; ++j)
        sum += re[j] * (x -
                        2.0 * std::atan2(be[j] * c - ae[j] * s,
                                         1.0 - ae[j] * c - be[j] * s) +
                        2.0 * std::atan2(be[j], 1.0 - ae[j]));
      return sum;
    };
    // g is monotone on R with g(x + 2 pi) = g(x) + 2 pi; t is in [0, 2 pi].
    double lo = -1.0, hi = kTwoPi + 1.0;
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (!(mid > lo && mid < hi)) break;
      (g(mid) < tv[e] ? lo : hi) = mid;
    }
    const double root = 0.5 * (lo + hi), residual = std::abs(g(root) - tv[e]);
    if (!(residual <= 1e-8))
      return absl::InvalidArgumentError(
          absl::StrCat("mobius.inverse: bisection for entry ", e, " (target ",
                       tv[e], ") ends with residual ", residual,
                       "; parameters and targets must be finite"));
    (*roots)[e] = root;
  }
  return absl::OkStatus();
}

CircleMapResult ApplyMobius(int64_t m, const Tensor& theta,
                            const Tensor& params, bool inverse) {
  Mobius w = MakeMobius(params, m);
  Tensor phi = Squeeze(Narrow(params, 2, 3 * m - 1, 1));
  Tensor g, dg;
  if (!inverse) {
    MobiusLift(w, WrapAngle(theta), &g, &dg);
    return {WrapAngle(g + phi), Log(dg), absl::OkStatus()};
  }
  Tensor t = WrapAngle(theta - phi);
  if (m == 1) {
    // theta = s - 2 arg(1 + conj(w) e^{is}),  s = t + arg h_w(1).
    Tensor s = Unsqueeze(t) - 2.0 * Atan2(w.b, 1.0 - w.a);
    Tensor c = Cos(s), sn = Sin(s);
    Tensor re = 1.0 + w.a * c + w.b * sn, im = w.a * sn - w.b * c;
    Tensor x = s - 2.0 * Atan2(im, re);
    Tensor lad = Log(w.one_minus / (Square(re) + Square(im)));
    return {WrapAngle(Squeeze(x)), Squeeze(lad), absl::OkStatus()};
  }
  std::vector<double> roots;
  absl::Status status;
  {
    NoGradScope no_grad;
    status = BisectMobius(w, t.Detach(), &roots);
  }
  if (!status.ok()) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {Tensor::Full(theta.shape(), nan, theta.dtype()),
            Tensor::Full(theta.shape(), nan, theta.dtype()), status};
  }
  Tensor x = Tensor::FromVector(theta.shape(), roots, theta.dtype());
  for (int step = 0; step < 2; ++step) {  // recorded: derivatives of the root
    MobiusLift(w, x, &g, &dg);
    x = x - (g - t) / dg;
  }
  MobiusLift(w, x, &g, &dg);
  return {WrapAngle(x), -Log(dg), absl::OkStatus()};
}

// Constant one-hot [N, K, B] of the bin of each v in [0, 2 pi) among the
// knots [N, K, B + 1].
Tensor FindBins(const Tensor& v, const Tensor& knots) {
  const int64_t nk = v.numel(), bins = knots.dim(2) - 1;
  Tensor onehot = Tensor::Zeros({v.dim(0), v.dim(1), bins}, v.dtype());
  VisitDType(v.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = onehot.mutable_data<T>();
    const T* pv = v.data<T>();
    const T* pk = knots.data<T>();
    for (int64_t e = 0; e < nk; ++e) {
      const T* kn = pk + e * (bins + 1);
      const int64_t b = std::upper_bound(kn + 1, kn + bins, pv[e]) - (kn + 1);
      po[e * bins + std::clamp<int64_t>(b, 0, bins - 1)] = 1;
    }
  });
  return onehot;
}

CircleMapResult ApplySpline(const CircleMapOptions& o, const Tensor& theta,
                            const Tensor& params, bool inverse) {
  const int64_t k = o.bins;
  flows::RqKnots kn = flows::RqSplineKnots(
      Concat({Narrow(params, 2, 0, 2 * k), Narrow(params, 2, 2 * k + 1, k - 1)},
             2),
      SplineOptions(o));
  const double shift = std::log(std::expm1(1.0 - o.min_derivative));
  Tensor edge =
      Softplus(Narrow(params, 2, 2 * k, 1) + shift) + o.min_derivative;
  Tensor xs = kn.x + kPi, ys = kn.y + kPi;
  Tensor ds = Concat({edge, Narrow(kn.derivative, 2, 1, k - 1), edge}, 2);
  Tensor phi = Squeeze(Narrow(params, 2, 3 * k, 1));
  Tensor v = inverse ? WrapAngle(theta - phi) : WrapAngle(theta);
  Tensor onehot = FindBins(v, inverse ? ys : xs);
  auto lower = [&](const Tensor& t) { return Narrow(t, 2, 0, k); };
  auto upper = [&](const Tensor& t) { return Narrow(t, 2, 1, k); };
  auto pick = [&](const Tensor& t) { return Sum(t * onehot, 2); };
  Tensor xk = pick(lower(xs)), wk = pick(upper(xs) - lower(xs));
  Tensor yk = pick(lower(ys)), hk = pick(upper(ys) - lower(ys));
  Tensor d0 = pick(lower(ds)), d1 = pick(upper(ds));
  Tensor s = hk / wk, c2 = d0 + d1 - 2.0 * s;
  Tensor xi;
  if (!inverse) {
    xi = (v - xk) / wk;
  } else {
    Tensor dy = v - yk;
    Tensor a = hk * (s - d0) + dy * c2, b = hk * d0 - dy * c2, c = -s * dy;
    xi = 2.0 * c / (-b - Sqrt(Square(b) - 4.0 * a * c));
  }
  Tensor t = xi * (1.0 - xi), den = s + c2 * t;
  Tensor lad = 2.0 * Log(s) +
               Log(d1 * Square(xi) + 2.0 * s * t + d0 * Square(1.0 - xi)) -
               2.0 * Log(den);
  if (!inverse) {
    Tensor y = yk + hk * (s * Square(xi) + d0 * t) / den;
    return {WrapAngle(y + phi), lad, absl::OkStatus()};
  }
  return {WrapAngle(xi * wk + xk), -lad, absl::OkStatus()};
}

}  // namespace

int64_t CircleMapOptions::params_per_entry() const {
  return kind == CircleMapKind::kMobius ? 3 * components : 3 * bins + 1;
}

std::string CircleMapOptions::name() const {
  return kind == CircleMapKind::kMobius ? "mobius" : "circle_spline";
}

absl::Status CircleMapOptions::Validate() const {
  if (kind == CircleMapKind::kMobius) {
    if (components >= 1) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("mobius: need components >= 1, got ", components));
  }
  absl::Status s = SplineOptions(*this).Validate();
  if (s.ok()) return s;
  return absl::InvalidArgumentError(
      absl::StrCat("circle_spline: ", s.message()));
}

CircleMapResult ApplyCircleMap(const CircleMapOptions& options,
                               const Tensor& theta, const Tensor& params,
                               bool inverse) {
  absl::Status valid = options.Validate();
  FT_CHECK(valid.ok(), valid.message());
  FT_CHECK(theta.rank() == 2 && params.rank() == 3 &&
               params.dim(0) == theta.dim(0) && params.dim(1) == theta.dim(1) &&
               params.dim(2) == options.params_per_entry(),
           options.name(), ": angles ", theta.shape().ToString(),
           " with params ", params.shape().ToString(), " (want [N, K, ",
           options.params_per_entry(), "])");
  if (options.kind == CircleMapKind::kMobius)
    return ApplyMobius(options.components, theta, params, inverse);
  return ApplySpline(options, theta, params, inverse);
}

}  // namespace flowtape::manifolds
