#include "data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::data {

Tensor Dequantize(const Tensor& x, int levels, Rng& rng) {
  Tensor v = Tensor::Empty(x.shape());
  const double* in = x.data<double>();
  double* out = v.mutable_data<double>();
  for (int64_t i = 0; i < x.numel(); ++i)
    out[i] = (in[i] + rng.Uniform()) / levels;
  return v;
}

LogitResult LogitTransform(const Tensor& v, double alpha) {
  FT_CHECK(alpha >= 0.0 && alpha < 0.5, "logit_transform: alpha ", alpha,
           " outside [0, 0.5)");
  Tensor s = alpha + (1.0 - 2.0 * alpha) * v;
  Tensor log_s = Log(s), log_1ms = Log(1.0 - s);
  Tensor per_dim = std::log(1.0 - 2.0 * alpha) - log_s - log_1ms;
  Tensor flat = Reshape(per_dim, {v.dim(0), -1});
  return {log_s - log_1ms, Sum(flat, 1)};
}

Tensor InverseLogit(const Tensor& y, double alpha) {
  return (Sigmoid(y) - alpha) / (1.0 - 2.0 * alpha);
}

double BitsPerDim(double nll_v, int64_t dims, int levels) {
  return (nll_v + dims * std::log(static_cast<double>(levels))) /
         (dims * std::log(2.0));
}

Tensor TakeRows(const Tensor& x, const std::vector<int64_t>& index) {
  const int64_t row = x.numel() / x.dim(0);
  std::vector<int64_t> dims = x.shape().dims();
  dims[0] = static_cast<int64_t>(index.size());
  Tensor out = Tensor::Empty(Shape(dims), x.dtype());
  VisitDType(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* o = out.mutable_data<T>();
    for (size_t i = 0; i < index.size(); ++i) {
      FT_CHECK(index[i] >= 0 && index[i] < x.dim(0), "take_rows: index ",
               index[i], " out of range for ", x.shape().ToString());
      std::copy_n(x.data<T>() + index[i] * row, row, o + i * row);
    }
  });
  return out;
}

std::vector<int64_t> Permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  rng.Shuffle(p);
  return p;
}

}  // namespace flowtape::data
