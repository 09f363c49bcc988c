// Reductions and broadcasting: value and backward rule side by side.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {
using internal::AxisView;

// Shape of a reduction over `axis`, kept as size 1.
Shape KeepDimShape(const Shape& s, int axis) { return s.WithDim(axis, 1); }

// Adjoint g of a reduction over saved_int(0) (-1: all) broadcast back.
Tensor ExpandReduced(const OpContext& c, const Tensor& g) {
  const Shape& in = c.input_shape(0);
  const int axis = static_cast<int>(c.saved_int(0));
  if (axis < 0) return BroadcastTo(g, in);  // full reduction
  return BroadcastTo(Reshape(g, KeepDimShape(in, axis).dims()), in);
}

Shape ReducedShape(const Shape& s, int axis, bool keepdim) {
  return keepdim ? KeepDimShape(s, axis) : s.WithDim(axis, -1);
}
}  // namespace

Tensor Sum(const Tensor& x) {
  Op op("sum", {x});
  Tensor out = op.NewOutput(Shape{});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    out.mutable_data<T>()[0] = internal::SumOf(x.data<T>(), x.numel());
  });
  op.SaveInt(-1);
  op.SetFlags(kEmitsUniformAdjoint);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    // Plain sweeps pass the scalar adjoint on (NodeFlag).
    gin[0] = c.create_graph() ? ExpandReduced(c, g) : g;
  });
}

Tensor Sum(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  AxisView v(x.shape(), axis);
  Op op("sum_axis", {x});
  Tensor out = op.NewOutput(ReducedShape(x.shape(), axis, keepdim));
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    if (v.inner == 1) {  // rows of a contiguous block: vectorised row sums
      for (int64_t o = 0; o < v.outer; ++o)
        po[o] = internal::SumOf(px + o * v.n, v.n);
      return;
    }
    std::fill_n(po, v.outer * v.inner, T(0));
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t j = 0; j < v.n; ++j) {
        const T* row = px + (o * v.n + j) * v.inner;
        T* dst = po + o * v.inner;
        for (int64_t k = 0; k < v.inner; ++k) dst[k] += row[k];
      }
  });
  op.SaveInt(axis);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = ExpandReduced(c, g);
  });
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
template <typename T>
int64_t ArgMax(const T* p, int64_t n, int64_t stride) {
  int64_t best = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T v = p[j * stride];
    if (std::isnan(v)) return j;
    if (v > p[best * stride]) best = j;
  }
  return best;
}

// Constant 0/1 mask marking the arg-max (above) along the reduction.
Tensor ArgMaxMask(const Tensor& x, int axis) {
  Tensor mask = Tensor::Zeros(x.shape(), x.dtype());
  VisitDType(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* m = mask.mutable_data<T>();
    const T* px = x.data<T>();
    AxisView v =
        axis < 0 ? AxisView(Shape{x.numel()}, 0) : AxisView(x.shape(), axis);
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        const int64_t base = o * v.n * v.inner + k;
        if (v.n > 0) m[base + ArgMax(px + base, v.n, v.inner) * v.inner] = 1;
      }
  });
  return mask;
}

void MaxBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  Tensor mask = ArgMaxMask(c.input(0), static_cast<int>(c.saved_int(0)));
  gin[0] = ExpandReduced(c, g) * mask;
}
}  // namespace

Tensor Max(const Tensor& x) {
  FT_CHECK(x.numel() > 0, "max: empty tensor ", x.shape().ToString());
  Op op("max", {x});
  Tensor out = op.NewOutput(Shape{});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    out.mutable_data<T>()[0] = p[ArgMax(p, x.numel(), 1)];
  });
  op.SaveInt(-1);
  return op.Finish(out, MaxBackward);
}

Tensor Max(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  FT_CHECK(x.shape()[axis] > 0, "max: empty axis in ", x.shape().ToString());
  AxisView v(x.shape(), axis);
  Op op("max_axis", {x});
  Tensor out = op.NewOutput(ReducedShape(x.shape(), axis, keepdim));
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        const T* row = px + o * v.n * v.inner + k;
        po[o * v.inner + k] = row[ArgMax(row, v.n, v.inner) * v.inner];
      }
  });
  op.SaveInt(axis);
  return op.Finish(out, MaxBackward);
}

Tensor LogSumExp(const Tensor& x, int axis, bool keepdim) {
  axis = x.shape().NormalizeAxis(axis);
  AxisView v(x.shape(), axis);
  Op op("logsumexp", {x});
  Tensor out = op.NewOutput(ReducedShape(x.shape(), axis, keepdim));
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < v.n; ++j)
          m = std::max(m, px[(o * v.n + j) * v.inner + k]);
        T s = 0;
        if (std::isfinite(m))
          for (int64_t j = 0; j < v.n; ++j)
            s += std::exp(px[(o * v.n + j) * v.inner + k] - m);
        po[o * v.inner + k] = std::isfinite(m) ? m + std::log(s) : m;
      }
  });
  op.SaveInt(axis);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    // d/dx = softmax(x) = exp(x - y).
    const int axis = static_cast<int>(c.saved_int(0));
    Shape keep = KeepDimShape(c.input_shape(0), axis);
    Tensor y = Reshape(c.output(), keep.dims());
    gin[0] = GradMul(ExpandReduced(c, g), Exp(c.input(0) - y));
  });
}

namespace {
// Along `axis`, with m = max x: softmax = e^(x-m) / s, log_softmax =
// (x - m) - log s, s = sum e^(x-m). Shifting by m keeps both exact to a few
// ulp (x - logsumexp(x) would lose the digits of logsumexp's rounding).
Tensor SoftmaxValue(Op& op, const Tensor& x, int axis, bool log) {
  FT_CHECK(x.rank() > 0, op.name(), ": needs rank >= 1, got ",
           x.shape().ToString());
  AxisView v(x.shape(), axis);
  Tensor out = op.NewOutput(x.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t k = 0; k < v.inner; ++k) {
        const T* src = px + o * v.n * v.inner + k;
        T* dst = po + o * v.n * v.inner + k;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < v.n; ++j) m = std::max(m, src[j * v.inner]);
        T s = 0;
        for (int64_t j = 0; j < v.n; ++j) {
          dst[j * v.inner] = src[j * v.inner] - m;
          s += std::exp(dst[j * v.inner]);
        }
        const T ls = std::log(s);
        for (int64_t j = 0; j < v.n; ++j) {
          T& d = dst[j * v.inner];
          d = log ? d - ls : std::exp(d) / s;
        }
      }
  });
  op.SaveInt(axis);
  return out;
}
}  // namespace

// y = log_softmax(x): dx = g - softmax(x) sum(g).
Tensor LogSoftmax(const Tensor& x, int axis) {
  axis = x.shape().NormalizeAxis(axis);
  Op op("log_softmax", {x});
  Tensor out = SoftmaxValue(op, x, axis, /*log=*/true);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const int axis = static_cast<int>(c.saved_int(0));
    gin[0] = g - GradMul(Sum(g, axis, /*keepdim=*/true), Exp(c.output()));
  });
}

// y = softmax(x): dx = y (g - sum(g y)).
Tensor Softmax(const Tensor& x, int axis) {
  axis = x.shape().NormalizeAxis(axis);
  Op op("softmax", {x});
  Tensor out = SoftmaxValue(op, x, axis, /*log=*/false);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const int axis = static_cast<int>(c.saved_int(0));
    Tensor y = c.output();
    gin[0] = y * (g - Sum(g * y, axis, /*keepdim=*/true));
  });
}

Tensor BroadcastTo(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  FT_CHECK(BroadcastShapes("broadcast_to", x.shape(), shape) == shape,
           "broadcast_to: ", x.shape().ToString(), " cannot broadcast to ",
           shape.ToString());
  Op op("broadcast_to", {x});
  Tensor out = op.NewOutput(shape);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    internal::BroadcastBinary(px, x.shape(), px, x.shape(),
                              out.mutable_data<T>(), shape,
                              [](T a, T) { return a; });
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = SumTo(g, c.input_shape(0));
  });
}

Tensor SumTo(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  FT_CHECK(BroadcastShapes("sum_to", shape, x.shape()) == x.shape(),
           "sum_to: ", shape.ToString(), " does not broadcast to ",
           x.shape().ToString());
  Op op("sum_to", {x});
  Tensor out = op.NewOutput(shape);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    if (shape.numel() == 1) {
      po[0] = internal::SumOf(px, x.numel());
      return;
    }
    std::fill_n(po, shape.numel(), T(0));
    auto d = internal::Padded(x.shape());
    auto so = internal::BroadcastStrides(shape, x.shape());
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < d[0]; ++i0)
      for (int64_t i1 = 0; i1 < d[1]; ++i1)
        for (int64_t i2 = 0; i2 < d[2]; ++i2) {
          T* dst = po + i0 * so[0] + i1 * so[1] + i2 * so[2];
          for (int64_t i3 = 0; i3 < d[3]; ++i3) dst[i3 * so[3]] += px[k++];
        }
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = BroadcastTo(g, c.input_shape(0));
  });
}

}  // namespace flowtape
