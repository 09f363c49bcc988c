// Reductions and broadcasting: value and backward rule side by side.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.h"
#include "autodiff/kernels.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {
using internal::NewOutput;
using internal::Record;
using internal::ShouldRecord;

// x viewed as [outer, n, inner] around `axis`.
using internal::AxisView;

// Shape of a reduction over `axis`, kept as size 1.
Shape KeepDimShape(const Shape& s, int axis) { return s.WithDim(axis, 1); }

// Adjoint g of a reduction over iaux[0] (keepdim iaux[1]) broadcast back.
Tensor ExpandReduced(const OpContext& c, const Tensor& g) {
  const Shape& in = c.node->inputs[0]->shape;
  if (c.node->iaux[0] < 0) return BroadcastTo(g, in);  // full reduction
  Shape keep = KeepDimShape(in, static_cast<int>(c.node->iaux[0]));
  return BroadcastTo(Reshape(g, keep.dims()), in);
}
}  // namespace

Tensor Sum(const Tensor& x) {
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(Shape{}, rec);
  const_cast<double*>(out.data())[0] = internal::SumOf(x.data(), x.numel());
  return Record(out, rec, "sum", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  // Plain sweeps pass the scalar adjoint on (NodeFlag).
                  gin[0] = Tape::Get().grad_enabled() ? ExpandReduced(c, g) : g;
                },
                {{}, {-1}, kEmitsUniformAdjoint});
}

Tensor Sum(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  AxisView v(x.shape(), axis);
  const bool rec = ShouldRecord({&x});
  Shape os =
      keepdim ? KeepDimShape(x.shape(), axis) : x.shape().WithDim(axis, -1);
  Tensor out = NewOutput(os, rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  std::fill_n(po, os.numel(), 0.0);
  if (v.inner == 1) {  // rows of a contiguous block: vectorised row sums
    for (int64_t o = 0; o < v.outer; ++o)
      po[o] = internal::SumOf(px + o * v.n, v.n);
  } else {
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t j = 0; j < v.n; ++j) {
        const double* row = px + (o * v.n + j) * v.inner;
        double* dst = po + o * v.inner;
        for (int64_t k = 0; k < v.inner; ++k) dst[k] += row[k];
      }
  }
  return Record(out, rec, "sum_axis", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  gin[0] = ExpandReduced(c, g);
                },
                {{}, {axis, keepdim}});
}

Tensor Mean(const Tensor& x) {
  return Sum(x) * (1.0 / static_cast<double>(std::max<int64_t>(x.numel(), 1)));
}

Tensor Mean(const Tensor& x, int axis, bool keepdim) {
  int64_t n = x.shape()[axis];
  return Sum(x, axis, keepdim) *
         (1.0 / static_cast<double>(std::max<int64_t>(n, 1)));
}

namespace {
// Index of the first NaN among p[0], p[stride], ... p[(n-1) stride] (NaN
// propagates, as in NumPy and PyTorch), else of the first maximum.
int64_t ArgMax(const double* p, int64_t n, int64_t stride) {
  int64_t best = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double v = p[j * stride];
    if (std::isnan(v)) return j;
    if (v > p[best * stride]) best = j;
  }
  return best;
}

// Constant 0/1 mask marking the arg-max (above) along the reduction.
Tensor ArgMaxMask(const Tensor& x, int axis) {
  Tensor mask = Tensor::Zeros(x.shape());
  double* m = mask.mutable_data();
  const double* px = x.data();
  AxisView v =
      axis < 0 ? AxisView(Shape{x.numel()}, 0) : AxisView(x.shape(), axis);
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.inner; ++k) {
      const int64_t base = o * v.n * v.inner + k;
      if (v.n > 0) m[base + ArgMax(px + base, v.n, v.inner) * v.inner] = 1.0;
    }
  return mask;
}

void MaxBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  Tensor mask = ArgMaxMask(c.in(0), static_cast<int>(c.node->iaux[0]));
  gin[0] = ExpandReduced(c, g) * mask;
}
}  // namespace

Tensor Max(const Tensor& x) {
  FT_CHECK(x.numel() > 0, "max: empty tensor ", x.shape().ToString());
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(Shape{}, rec);
  const double* p = x.data();
  const_cast<double*>(out.data())[0] = p[ArgMax(p, x.numel(), 1)];
  return Record(out, rec, "max", {&x}, MaxBackward, {{}, {-1}});
}

Tensor Max(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  FT_CHECK(x.shape()[axis] > 0, "max: empty axis in ", x.shape().ToString());
  AxisView v(x.shape(), axis);
  const bool rec = ShouldRecord({&x});
  Shape os =
      keepdim ? KeepDimShape(x.shape(), axis) : x.shape().WithDim(axis, -1);
  Tensor out = NewOutput(os, rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.inner; ++k) {
      const double* row = px + o * v.n * v.inner + k;
      po[o * v.inner + k] = row[ArgMax(row, v.n, v.inner) * v.inner];
    }
  return Record(out, rec, "max_axis", {&x}, MaxBackward, {{}, {axis, keepdim}});
}

Tensor LogSumExp(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  AxisView v(x.shape(), axis);
  const bool rec = ShouldRecord({&x});
  Shape os =
      keepdim ? KeepDimShape(x.shape(), axis) : x.shape().WithDim(axis, -1);
  Tensor out = NewOutput(os, rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.inner; ++k) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < v.n; ++j)
        m = std::max(m, px[(o * v.n + j) * v.inner + k]);
      double s = 0;
      if (std::isfinite(m))
        for (int64_t j = 0; j < v.n; ++j)
          s += std::exp(px[(o * v.n + j) * v.inner + k] - m);
      po[o * v.inner + k] = std::isfinite(m) ? m + std::log(s) : m;
    }
  return Record(out, rec, "logsumexp", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  // d/dx = softmax(x) = exp(x - y).
                  int axis = static_cast<int>(c.node->iaux[0]);
                  Shape keep = KeepDimShape(c.node->inputs[0]->shape, axis);
                  Tensor y = Reshape(c.out(), keep.dims());
                  gin[0] = GradMul(ExpandReduced(c, g), Exp(c.in(0) - y));
                },
                {{}, {axis, keepdim}});
}

namespace {
// Along `axis`, with m = max x: softmax = e^(x-m) / s, log_softmax =
// (x - m) - log s, s = sum e^(x-m). Shifting by m keeps both exact to a few
// ulp (x - logsumexp(x) would lose the digits of logsumexp's rounding).
Tensor SoftmaxValue(const char* name, const Tensor& x, int axis, bool log,
                    bool rec) {
  FT_CHECK(x.rank() > 0, name, ": needs rank >= 1, got ", x.shape().ToString());
  AxisView v(x.shape(), axis);
  Tensor out = NewOutput(x.shape(), rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t k = 0; k < v.inner; ++k) {
      const double* src = px + o * v.n * v.inner + k;
      double* dst = po + o * v.n * v.inner + k;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < v.n; ++j) m = std::max(m, src[j * v.inner]);
      double s = 0;
      for (int64_t j = 0; j < v.n; ++j) {
        dst[j * v.inner] = src[j * v.inner] - m;
        s += std::exp(dst[j * v.inner]);
      }
      const double ls = std::log(s);
      for (int64_t j = 0; j < v.n; ++j) {
        double& d = dst[j * v.inner];
        d = log ? d - ls : std::exp(d) / s;
      }
    }
  return out;
}
}  // namespace

// y = log_softmax(x): dx = g - softmax(x) sum(g).
Tensor LogSoftmax(const Tensor& x, int axis) {
  axis = x.shape().NormalizeAxis(axis);
  const bool rec = ShouldRecord({&x});
  Tensor out = SoftmaxValue("log_softmax", x, axis, /*log=*/true, rec);
  return Record(out, rec, "log_softmax", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  const int axis = static_cast<int>(c.iaux()[0]);
                  gin[0] =
                      g - GradMul(Sum(g, axis, /*keepdim=*/true), Exp(c.out()));
                },
                {{}, {axis}});
}

// y = softmax(x): dx = y (g - sum(g y)).
Tensor Softmax(const Tensor& x, int axis) {
  axis = x.shape().NormalizeAxis(axis);
  const bool rec = ShouldRecord({&x});
  Tensor out = SoftmaxValue("softmax", x, axis, /*log=*/false, rec);
  return Record(out, rec, "softmax", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  const int axis = static_cast<int>(c.iaux()[0]);
                  Tensor y = c.out();
                  gin[0] = y * (g - Sum(g * y, axis, /*keepdim=*/true));
                },
                {{}, {axis}});
}

Tensor BroadcastTo(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  FT_CHECK(BroadcastShapes("broadcast_to", x.shape(), shape) == shape,
           "broadcast_to: ", x.shape().ToString(), " cannot broadcast to ",
           shape.ToString());
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(shape, rec);
  internal::BroadcastBinary(x.data(), x.shape(), x.data(), x.shape(),
                            const_cast<double*>(out.data()), shape,
                            [](double a, double) { return a; });
  return Record(out, rec, "broadcast_to", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  gin[0] = SumTo(g, c.node->inputs[0]->shape);
                });
}

Tensor SumTo(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  FT_CHECK(BroadcastShapes("sum_to", shape, x.shape()) == x.shape(),
           "sum_to: ", shape.ToString(), " does not broadcast to ",
           x.shape().ToString());
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(shape, rec);
  double* po = const_cast<double*>(out.data());
  std::fill_n(po, shape.numel(), 0.0);
  const double* px = x.data();
  if (shape.numel() == 1) {
    po[0] = internal::SumOf(px, x.numel());
  } else {
    auto d = internal::Padded(x.shape());
    auto so = internal::BroadcastStrides(shape, x.shape());
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < d[0]; ++i0)
      for (int64_t i1 = 0; i1 < d[1]; ++i1)
        for (int64_t i2 = 0; i2 < d[2]; ++i2) {
          double* dst = po + i0 * so[0] + i1 * so[1] + i2 * so[2];
          for (int64_t i3 = 0; i3 < d[3]; ++i3) dst[i3 * so[3]] += px[k++];
        }
  }
  return Record(out, rec, "sum_to", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  gin[0] = BroadcastTo(g, c.node->inputs[0]->shape);
                });
}

}  // namespace flowtape
