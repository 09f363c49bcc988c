#include "nn/init.h"

#include <cmath>

#include "autodiff/check.h"

namespace flowtape::nn {
namespace {
void Fans(const Shape& s, double* fan_in, double* fan_out) {
  FT_CHECK(s.rank() == 2 || s.rank() == 4,
           "init: want a matrix or conv "
           "kernel shape, got ",
           s.ToString());
  if (s.rank() == 2) {
    *fan_in = s[0];
    *fan_out = s[1];
  } else {
    double k = static_cast<double>(s[2] * s[3]);
    *fan_in = s[1] * k;
    *fan_out = s[0] * k;
  }
}
}  // namespace

Tensor XavierUniform(const Shape& shape, Rng& rng) {
  double fi, fo;
  Fans(shape, &fi, &fo);
  double a = std::sqrt(6.0 / (fi + fo));
  Tensor t = Tensor::Empty(shape);
  double* p = t.mutable_data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = a * (2.0 * rng.Uniform() - 1.0);
  return t;
}

Tensor HeNormal(const Shape& shape, Rng& rng) {
  double fi, fo;
  Fans(shape, &fi, &fo);
  double s = std::sqrt(2.0 / fi);
  Tensor t = Tensor::Empty(shape);
  double* p = t.mutable_data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = s * rng.Normal();
  return t;
}

}  // namespace flowtape::nn
