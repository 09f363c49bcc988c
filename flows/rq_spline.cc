#include "flows/rq_spline.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

// 2B (m + (1 - K m) softmax(u)) along the last axis.
Tensor BinSizes(const Tensor& logits, double min, double bound) {
  const int64_t k = logits.dim(2);
  return (Softmax(logits, 2) * (1.0 - min * k) + min) * (2.0 * bound);
}

// Knots [N, D, K+1] from bin sizes [N, D, K]: -B, -B + cumsum, B.
Tensor Knots(const Tensor& sizes, double bound) {
  const int64_t n = sizes.dim(0), d = sizes.dim(1), k = sizes.dim(2);
  const DType dt = sizes.dtype();
  Tensor lo = Tensor::Full({n, d, 1}, -bound, dt),
         hi = Tensor::Full({n, d, 1}, bound, dt);
  // Inner knot j (j < K-1) = -B + sum_{i <= j} sizes_i: a product with an
  // upper-triangular ones matrix.
  std::vector<double> ones(k * (k - 1), 0.0);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = i; j < k - 1; ++j) ones[i * (k - 1) + j] = 1.0;
  Tensor tri = Tensor::FromVector({k, k - 1}, ones, dt);
  Tensor inner = MatMul(Reshape(sizes, {n * d, k}), tri) - bound;
  return Concat({lo, Reshape(inner, {n, d, k - 1}), hi}, 2);
}

// Constant one-hot [N, D, K] of the bin of each value (clamped for values
// outside [-B, B]) and the 0/1 mask [N, D] of values strictly inside.
void FindBins(const Tensor& v, const Tensor& knots, double bound,
              Tensor* onehot, Tensor* inside) {
  const int64_t nd = v.numel(), k = knots.dim(2) - 1;
  *onehot = Tensor::Zeros({v.dim(0), v.dim(1), k}, v.dtype());
  *inside = Tensor::Zeros(v.shape(), v.dtype());
  VisitDType(v.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = onehot->mutable_data<T>();
    T* pi = inside->mutable_data<T>();
    const T* pv = v.data<T>();
    const T* pk = knots.data<T>();
    for (int64_t e = 0; e < nd; ++e) {
      pi[e] = (pv[e] > -bound && pv[e] < bound) ? 1 : 0;
      const T* kn = pk + e * (k + 1);
      // Number of inner knots <= v.
      int64_t b = std::upper_bound(kn + 1, kn + k, pv[e]) - (kn + 1);
      po[e * k + std::min<int64_t>(std::max<int64_t>(b, 0), k - 1)] = 1;
    }
  });
}

}  // namespace

absl::Status RqSplineOptions::Validate() const {
  const RqSplineOptions& o = *this;
  if (o.bins >= 2 && o.bound > 0 && std::isfinite(o.bound) &&
      o.min_bin_width >= 0 && o.min_bin_width * o.bins < 1 &&
      o.min_bin_height >= 0 && o.min_bin_height * o.bins < 1 &&
      o.min_derivative > 0 && o.min_derivative < 1)
    return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "rq_spline: need bins >= 2, 0 < bound < inf, 0 <= bins * min_bin_width "
      "< 1, 0 <= bins * min_bin_height < 1, 0 < min_derivative < 1; got bins ",
      o.bins, ", bound ", o.bound, ", min width ", o.min_bin_width,
      ", min height ", o.min_bin_height, ", min derivative ",
      o.min_derivative));
}

RqKnots RqSplineKnots(const Tensor& params, const RqSplineOptions& o) {
  const int64_t k = o.bins;
  FT_CHECK(params.rank() == 3 && params.dim(2) == o.num_params(),
           "rq_spline: params ", params.shape().ToString(), " for ", k,
           " bins (want [N, D, ", o.num_params(), "])");
  absl::Status valid = o.Validate();
  FT_CHECK(valid.ok(), valid.message());
  const int64_t n = params.dim(0), d = params.dim(1);
  RqKnots r;
  r.x = Knots(BinSizes(Narrow(params, 2, 0, k), o.min_bin_width, o.bound),
              o.bound);
  r.y = Knots(BinSizes(Narrow(params, 2, k, k), o.min_bin_height, o.bound),
              o.bound);
  Tensor one = Tensor::Ones({n, d, 1}, params.dtype());
  const double shift = std::log(std::expm1(1.0 - o.min_derivative));
  Tensor inner =
      Softplus(Narrow(params, 2, 2 * k, k - 1) + shift) + o.min_derivative;
  r.derivative = Concat({one, inner, one}, 2);
  return r;
}

RqSplineResult RqSpline(const Tensor& input, const Tensor& params,
                        const RqSplineOptions& o, bool inverse) {
  FT_CHECK(input.rank() == 2 && params.rank() == 3 &&
               params.dim(0) == input.dim(0) && params.dim(1) == input.dim(1),
           "rq_spline: input ", input.shape().ToString(), " with params ",
           params.shape().ToString());
  const int64_t k = o.bins;
  RqKnots kn = RqSplineKnots(params, o);
  Tensor onehot, inside;
  FindBins(input, inverse ? kn.y : kn.x, o.bound, &onehot, &inside);
  auto lower = [&](const Tensor& t) { return Narrow(t, 2, 0, k); };
  auto upper = [&](const Tensor& t) { return Narrow(t, 2, 1, k); };
  auto pick = [&](const Tensor& t) { return Sum(t * onehot, 2); };
  Tensor xk = pick(lower(kn.x)), wk = pick(upper(kn.x) - lower(kn.x));
  Tensor yk = pick(lower(kn.y)), hk = pick(upper(kn.y) - lower(kn.y));
  Tensor d0 = pick(lower(kn.derivative)), d1 = pick(upper(kn.derivative));
  Tensor s = hk / wk;
  Tensor c2 = d0 + d1 - 2.0 * s;
  // Values outside [-B, B] take the identity tail; feed the chosen bin's left
  // knot to the spline there so its (unused) branch stays finite.
  Tensor v = Where(inside, input, inverse ? yk : xk);
  Tensor xi;
  if (!inverse) {
    xi = (v - xk) / wk;
  } else {
    Tensor dy = v - yk;
    Tensor a = hk * (s - d0) + dy * c2;
    Tensor b = hk * d0 - dy * c2;
    Tensor c = -s * dy;
    xi = 2.0 * c / (-b - Sqrt(Square(b) - 4.0 * a * c));
  }
  Tensor t = xi * (1.0 - xi);
  Tensor den = s + c2 * t;
  Tensor lad = 2.0 * Log(s) +
               Log(d1 * Square(xi) + 2.0 * s * t + d0 * Square(1.0 - xi)) -
               2.0 * Log(den);
  Tensor zero = Tensor::Zeros({}, input.dtype());
  if (!inverse) {
    Tensor y = yk + hk * (s * Square(xi) + d0 * t) / den;
    return {Where(inside, y, input), Where(inside, lad, zero)};
  }
  Tensor x = xi * wk + xk;
  return {Where(inside, x, input), Where(inside, -lad, zero)};
}

}  // namespace flowtape::flows
