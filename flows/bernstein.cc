#include "flows/bernstein.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

// [x^0, x^1, .., x^m] as columns, x [R, 1].
Tensor Powers(const Tensor& x, int64_t m) {
  std::vector<Tensor> p = {Tensor::Ones(x.shape(), x.dtype())};
  for (int64_t k = 1; k <= m; ++k) p.push_back(k == 1 ? x : p.back() * x);
  return Concat(p, 1);
}

// b_{k,m}(z) for k = 0..m, [R, m + 1], from the power tables of z and 1 - z.
Tensor Basis(const Tensor& zp, const Tensor& wp, int64_t m) {
  std::vector<int64_t> rev(m + 1);
  std::vector<double> binom(m + 1);
  double c = 1;
  for (int64_t k = 0; k <= m; ++k) {
    rev[k] = m - k;
    binom[k] = c;
    c = c * (m - k) / (k + 1);
  }
  return Narrow(zp, 1, 0, m + 1) * IndexSelect(wp, 1, rev) *
         Tensor::FromVector({1, m + 1}, binom, zp.dtype());
}

// 0/1 masks of v < lo and lo < v < hi.
void Regions(const Tensor& v, double bound, Tensor* below, Tensor* inside) {
  *below = Tensor::Zeros(v.shape(), v.dtype());
  *inside = Tensor::Zeros(v.shape(), v.dtype());
  VisitDType(v.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* pv = v.data<T>();
    T* pb = below->mutable_data<T>();
    T* pi = inside->mutable_data<T>();
    for (int64_t i = 0; i < v.numel(); ++i) {
      pb[i] = pv[i] < -bound ? 1 : 0;
      pi[i] = (pv[i] >= -bound && pv[i] <= bound) ? 1 : 0;
    }
  });
}

}  // namespace

absl::Status BernsteinOptions::Validate() const {
  if (degree >= 4 && degree <= 64 && bound > 0 && std::isfinite(bound))
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bernstein: need 4 <= degree <= 64 and 0 < bound < inf; "
                   "got degree ",
                   degree, ", bound ", bound));
}

MonotoneEval BernsteinEval(const Tensor& v, const Tensor& params,
                           const BernsteinOptions& o) {
  const int64_t n = v.dim(0), k = v.dim(1), nk = n * k, m = o.degree;
  const double b = o.bound;
  FT_CHECK(params.rank() == 3 && params.dim(2) == o.num_params(),
           "bernstein: params ", params.shape().ToString(), " for degree ", m,
           " (want [N, K, ", o.num_params(), "])");
  const DType dt = v.dtype();
  const Tensor p = Reshape(params, {nk, m - 1});
  const Tensor beta0 = Narrow(p, 1, 0, 1) - b;
  const Tensor free =
      Softplus(Narrow(p, 1, 1, m - 2) + std::log(std::expm1(1.0))) *
      (2 * b / m);  // d_2 .. d_{M-1}
  const Tensor d = Concat(
      {Narrow(free, 1, 0, 1), free, Narrow(free, 1, m - 3, 1)}, 1);  // d_1..d_M
  // beta_k = beta_0 + sum_{i <= k} d_i: an upper-triangular ones product.
  std::vector<double> tri(m * m, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = i; j < m; ++j) tri[i * m + j] = 1;
  const Tensor beta = Concat(
      {beta0, beta0 + MatMul(d, Tensor::FromVector({m, m}, tri, dt))}, 1);

  const Tensor x = Reshape(v, {nk, 1});
  Tensor below, inside;
  Regions(x, b, &below, &inside);
  const Tensor z = (Where(inside, x, Tensor::Zeros({}, dt)) + b) * (0.5 / b);
  const Tensor zp = Powers(z, m), wp = Powers(1.0 - z, m);
  const Tensor u_in = Sum(beta * Basis(zp, wp, m), 1, /*keepdim=*/true);
  const Tensor du_in =
      Sum(d * Basis(zp, Narrow(wp, 1, 0, m), m - 1), 1, true) * (0.5 * m / b);
  const Tensor s0 = Narrow(d, 1, 0, 1) * (0.5 * m / b);
  const Tensor sm = Narrow(d, 1, m - 1, 1) * (0.5 * m / b);
  const Tensor u_lo = beta0 + s0 * (x + b);
  const Tensor u_hi = Narrow(beta, 1, m, 1) + sm * (x - b);
  const Tensor u = Where(inside, u_in, Where(below, u_lo, u_hi));
  const Tensor logd = Where(inside, Log(du_in), Where(below, Log(s0), Log(sm)));
  return {Reshape(u, {n, k}), Reshape(logd, {n, k})};
}

MonotoneResult Bernstein(const Tensor& in, const Tensor& params,
                         const BernsteinOptions& o, bool inverse) {
  return ApplyMonotone(
      "bernstein",
      [&o](const Tensor& v, const Tensor& p) { return BernsteinEval(v, p, o); },
      in, params, inverse);
}

}  // namespace flowtape::flows
