#include "flows/sos_polynomial.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

absl::Status SosOptions::Validate() const {
  if (polynomials >= 1 && degree >= 0 && scale > 0 && std::isfinite(scale))
    return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "sos_polynomial: need polynomials >= 1, degree >= 0, 0 < scale < inf; "
      "got polynomials ",
      polynomials, ", degree ", degree, ", scale ", scale));
}

MonotoneEval SosEval(const Tensor& v, const Tensor& params,
                     const SosOptions& o) {
  const int64_t n = v.dim(0), k = v.dim(1), nk = n * k;
  const int64_t r = o.polynomials, l1 = o.degree + 1;
  FT_CHECK(params.rank() == 3 && params.dim(2) == o.num_params(),
           "sos_polynomial: params ", params.shape().ToString(), " for ", r,
           " polynomials of degree ", o.degree, " (want [N, K, ",
           o.num_params(), "])");
  const DType dt = v.dtype();
  // alpha = a + 1 on the constant term + o_k on the linear term.
  std::vector<double> shift(r * l1, 0.0);
  for (int64_t q = 0; q < r; ++q) {
    shift[q * l1] = 1.0;
    if (l1 > 1 && r > 1)
      shift[q * l1 + 1] = -0.5 + static_cast<double>(q) / (r - 1);
  }
  const Tensor alpha = Reshape(Narrow(params, 2, 0, r * l1), {nk, r, l1}) +
                       Tensor::FromVector({1, r, l1}, shift, dt);
  const Tensor c = Reshape(Narrow(params, 2, r * l1, 1), {n, k});
  // Powers x^0 .. x^(2L+1) of x = v / B, [NK, 2L + 2]; with linear tails x
  // is clamped to [-1, 1] (exactly x inside), so every power is at most 1.
  const Tensor vf = Reshape(v, {nk, 1});
  Tensor x = vf * (1.0 / o.scale);
  if (o.linear_tails) x = Clamp(x, -1.0, 1.0);
  std::vector<Tensor> powers = {Tensor::Ones({nk, 1}, dt), x};
  for (int64_t p = 2; p < 2 * l1; ++p) powers.push_back(powers.back() * x);
  const Tensor xp = Concat(powers, 1);
  // g = mean_k q_k(x)^2.
  const Tensor q = Sum(alpha * Reshape(Narrow(xp, 1, 0, l1), {nk, 1, l1}), 2);
  const Tensor g = Mean(Square(q), 1);
  // u = c + (B / R) sum_{l,m} M_lm x^(l+m+1) / (l+m+1), M = alpha^T alpha.
  const Tensor m = Reshape(MatMulT(alpha, alpha, true, false), {nk, l1 * l1});
  std::vector<int64_t> index(l1 * l1);
  std::vector<double> inv(l1 * l1);
  for (int64_t a = 0; a < l1; ++a)
    for (int64_t b = 0; b < l1; ++b) {
      index[a * l1 + b] = a + b + 1;
      inv[a * l1 + b] = o.scale / (r * static_cast<double>(a + b + 1));
    }
  const Tensor integral = Sum(
      m * IndexSelect(xp, 1, index) * Tensor::FromVector({1, l1 * l1}, inv, dt),
      1);
  if (!o.linear_tails)
    return {c + Reshape(integral, {n, k}), Reshape(Log(g), {n, k})};
  // Tails: + g(+-1) (v -+ B) beyond +-B, the distance being exactly 0 inside.
  const Tensor beyond = Reshape(Relu(vf - o.scale) - Relu(-vf - o.scale), {nk});
  return {c + Reshape(integral + g * beyond, {n, k}), Reshape(Log(g), {n, k})};
}

MonotoneResult SosPolynomial(const Tensor& in, const Tensor& params,
                             const SosOptions& o, bool inverse) {
  return ApplyMonotone(
      "sos_polynomial",
      [&o](const Tensor& v, const Tensor& p) { return SosEval(v, p, o); }, in,
      params, inverse);
}

}  // namespace flowtape::flows
