#include "flows/dsf.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

absl::Status DsfOptions::Validate() const {
  if (units >= 1) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("dsf: units = ", units, " must be >= 1"));
}

MonotoneEval DsfEval(const Tensor& v, const Tensor& params,
                     const DsfOptions& o) {
  const int64_t n = v.dim(0), k = v.dim(1), h = o.units;
  FT_CHECK(params.rank() == 3 && params.dim(2) == o.num_params(),
           "dsf: params ", params.shape().ToString(), " for ", h,
           " units (want [N, K, ", o.num_params(), "])");
  std::vector<double> offsets(h, 0.0);
  for (int64_t j = 0; h > 1 && j < h; ++j)
    offsets[j] = -2.0 + 4.0 * j / (h - 1);
  const Tensor c = Tensor::FromVector({1, 1, h}, offsets, v.dtype());
  const Tensor a =
      Softplus(Narrow(params, 2, 0, h) + std::log(std::expm1(1.0)));
  const Tensor b = Narrow(params, 2, h, h) + c;
  const Tensor log_w = LogSoftmax(Narrow(params, 2, 2 * h, h), 2);
  const Tensor x = Reshape(v, {n, k, 1}) * a + b;  // [N, K, H]
  const Tensor ls_pos = LogSigmoid(x), ls_neg = LogSigmoid(-x);
  const Tensor log_s = LogSumExp(log_w + ls_pos, 2);
  const Tensor log_1ms = LogSumExp(log_w + ls_neg, 2);
  const Tensor log_ds = LogSumExp(log_w + Log(a) + ls_pos + ls_neg, 2);
  return {log_s - log_1ms, log_ds - log_s - log_1ms};
}

MonotoneResult Dsf(const Tensor& in, const Tensor& params, const DsfOptions& o,
                   bool inverse) {
  return ApplyMonotone(
      "dsf",
      [&o](const Tensor& v, const Tensor& p) { return DsfEval(v, p, o); }, in,
      params, inverse);
}

}  // namespace flowtape::flows
