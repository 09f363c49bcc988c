#include "autodiff/functional.h"

#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape {
namespace {
// Zeros of `shape` with ones at flat indices i, i + stride, i + 2 stride ...
Tensor OneHot(const Shape& shape, DType dtype, int64_t i, int64_t stride) {
  std::vector<double> v(shape.numel(), 0.0);
  for (int64_t k = i; k < shape.numel(); k += stride) v[k] = 1.0;
  return Tensor::FromVector(shape, v, dtype);
}

// x itself when it is on a differentiable path, else a leaf copy.
Tensor Differentiable(const Tensor& x) {
  if (x.requires_grad() && Tape::Get().grad_enabled()) return x;
  Tensor leaf = x.Detach();
  leaf.set_requires_grad(true);
  return leaf;
}
}  // namespace

std::pair<Tensor, Tensor> Vjp(const TensorFn& f, const Tensor& x,
                              const Tensor& v, bool create_graph) {
  EnableGradScope on;
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  FT_CHECK(v.shape() == y.shape(), "vjp: v ", v.shape().ToString(), " vs f(x) ",
           y.shape().ToString());
  Tensor g = Grad({y}, {xd}, {v}, create_graph)[0];
  return {y, g};
}

std::pair<Tensor, Tensor> Jvp(const TensorFn& f, const Tensor& x,
                              const Tensor& u, bool create_graph) {
  EnableGradScope on;
  FT_CHECK(u.shape() == x.shape(), "jvp: u ", u.shape().ToString(), " vs x ",
           x.shape().ToString());
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  Tensor w = Tensor::Zeros(y.shape(), y.dtype()).set_requires_grad(true);
  Tensor jtw = Grad({y}, {xd}, {w}, /*create_graph=*/true)[0];
  Tensor ju = Grad({jtw}, {w}, {u}, create_graph)[0];
  return {y, ju};
}

Tensor Jacobian(const TensorFn& f, const Tensor& x, bool create_graph) {
  EnableGradScope on;
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  const int64_t m = y.numel(), n = x.numel();
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < m; ++i) {
    Tensor e = OneHot(y.shape(), y.dtype(), i, m);  // e_i (m = numel)
    rows.push_back(Reshape(Grad({y}, {xd}, {e}, create_graph)[0], {1, n}));
  }
  if (m == 0) return Tensor::Zeros({0, n}, x.dtype());
  return Concat(rows, 0);
}

Tensor BatchJacobian(const TensorFn& f, const Tensor& x, bool create_graph) {
  EnableGradScope on;
  FT_CHECK(x.rank() == 2, "batch_jacobian: x must be [N, D], got ",
           x.shape().ToString());
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  FT_CHECK(y.rank() == 2 && y.dim(0) == x.dim(0),
           "batch_jacobian: f(x) must be [N, M], got ", y.shape().ToString());
  const int64_t n = x.dim(0), m = y.dim(1), d = x.dim(1);
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < m; ++i) {
    Tensor e = Tensor::UnitColumn(n, m, i, y.dtype());
    rows.push_back(Reshape(Grad({y}, {xd}, {e}, create_graph)[0], {n, 1, d}));
  }
  if (m == 0) return Tensor::Zeros({n, 0, d}, x.dtype());
  return Concat(rows, 1);
}

Tensor HessianVectorProduct(const TensorFn& f, const Tensor& x, const Tensor& v,
                            bool create_graph) {
  EnableGradScope on;
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  FT_CHECK(y.numel() == 1, "hvp: f must be scalar, got ", y.shape().ToString());
  Tensor g = Grad({y}, {xd}, {}, /*create_graph=*/true)[0];
  return Grad({Sum(g * v)}, {xd}, {}, create_graph)[0];
}

Tensor SampleNoise(const Shape& shape, Noise noise, Rng& rng, DType dtype) {
  return noise == Noise::kGaussian ? Tensor::Randn(shape, rng, dtype)
                                   : Tensor::Rademacher(shape, rng, dtype);
}

Tensor ExactTrace(const TensorFn& f, const Tensor& x, bool create_graph) {
  EnableGradScope on;
  FT_CHECK(x.rank() == 2, "exact_trace: x must be [N, D], got ",
           x.shape().ToString());
  Tensor xd = Differentiable(x);
  Tensor y = f(xd);
  FT_CHECK(y.shape() == x.shape(), "exact_trace: f(x) ", y.shape().ToString(),
           " must match x ", x.shape().ToString());
  const int64_t n = x.dim(0), d = x.dim(1);
  Tensor tr = Tensor::Zeros({n}, x.dtype());
  for (int64_t i = 0; i < d; ++i) {
    Tensor e = Tensor::UnitColumn(n, d, i, x.dtype());
    // Entry i of row i of each J_n.
    tr = tr + Reshape(GradColumns({y}, xd, i, 1, {e}, create_graph), {n});
  }
  return tr;
}

Tensor HutchinsonTrace(const TensorFn& f, const Tensor& x, const Tensor& eps,
                       bool create_graph) {
  auto [y, etj] = Vjp(f, x, eps, create_graph);  // eps' J
  Tensor prod = etj * eps;
  return prod.rank() >= 2 ? Sum(Reshape(prod, {prod.dim(0), -1}), 1)
                          : Sum(prod);
}

}  // namespace flowtape
