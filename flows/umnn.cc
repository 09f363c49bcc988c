#include "flows/umnn.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

absl::Status UmnnOptions::Validate() const {
  if (units >= 1 && intervals >= 2 && intervals <= 1024 && intervals % 2 == 0)
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("umnn: need units >= 1 and an even number of quadrature "
                   "intervals in [2, 1024]; got units ",
                   units, ", intervals ", intervals));
}

Quadrature ClenshawCurtis(int64_t n) {
  FT_CHECK(n >= 2 && n % 2 == 0, "ClenshawCurtis: n = ", n, " (even, >= 2)");
  Quadrature q;
  q.nodes.resize(n + 1);
  q.weights.resize(n + 1);
  const double nn = static_cast<double>(n);
  for (int64_t i = 0; i <= n; ++i) {
    const double theta = M_PI * i / nn;
    q.nodes[i] = std::cos(theta);
    if (i == 0 || i == n) {
      q.weights[i] = 1.0 / (nn * nn - 1);
      continue;
    }
    double s = 1.0;
    for (int64_t j = 1; j < n / 2; ++j)
      s -= 2.0 * std::cos(2.0 * j * theta) / (4.0 * j * j - 1);
    s -= std::cos(nn * theta) / (nn * nn - 1);
    q.weights[i] = 2.0 * s / nn;
  }
  return q;
}

MonotoneEval UmnnEval(const Tensor& v, const Tensor& params,
                      const UmnnOptions& o) {
  const int64_t n = v.dim(0), k = v.dim(1), nk = n * k, h = o.units;
  FT_CHECK(params.rank() == 3 && params.dim(2) == o.num_params(),
           "umnn: params ", params.shape().ToString(), " for ", h,
           " units (want [N, K, ", o.num_params(), "])");
  const DType dt = v.dtype();
  const int64_t q = o.intervals + 1;
  const Quadrature cc = ClenshawCurtis(o.intervals);
  std::vector<double> s(q), w(q), offsets(h, 0.0);
  for (int64_t i = 0; i < q; ++i) {
    s[i] = 0.5 * (1 + cc.nodes[i]);  // s_0 = 1: node 0 is t = v
    w[i] = 0.5 * cc.weights[i];
  }
  for (int64_t j = 0; h > 1 && j < h; ++j)
    offsets[j] = -2.0 + 4.0 * j / (h - 1);
  auto unit_param = [&](int64_t start) {
    return Reshape(Narrow(params, 2, start, h), {nk, 1, h});
  };
  const Tensor slope = unit_param(0) + 1.0;
  const Tensor bias =
      unit_param(h) + Tensor::FromVector({1, 1, h}, offsets, dt);
  const Tensor out = unit_param(2 * h);
  const Tensor d = Reshape(Narrow(params, 2, 3 * h, 1), {nk, 1});
  const Tensor b = Reshape(Narrow(params, 2, 3 * h + 1, 1), {n, k});
  // g at the nodes t_i = v s_i, [NK, Q].
  const Tensor x = Reshape(v, {nk, 1});
  const Tensor t = Reshape(x * Tensor::FromVector({1, q}, s, dt), {nk, q, 1});
  const Tensor hid = Sum(out * Tanh(t * slope + bias), 2) + d;
  const Tensor g = Softplus(hid + std::log(std::expm1(1.0)));
  const Tensor integral =
      x * Sum(g * Tensor::FromVector({1, q}, w, dt), 1, true);
  return {b + Reshape(integral, {n, k}),
          Reshape(Log(Narrow(g, 1, 0, 1)), {n, k})};
}

MonotoneResult Umnn(const Tensor& in, const Tensor& params,
                    const UmnnOptions& o, bool inverse) {
  return ApplyMonotone(
      "umnn",
      [&o](const Tensor& v, const Tensor& p) { return UmnnEval(v, p, o); }, in,
      params, inverse);
}

}  // namespace flowtape::flows
