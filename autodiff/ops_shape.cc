// Shape ops (reshape, permute, narrow, concat, gather, where, clamp): value and
// backward rule side by side.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_join.h"
#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {
using internal::AxisView;

// dst[0..n) = src[0..n): a plain loop for the short runs of narrow/concat/
// gather on the last axis, where a memcpy call per element dominates.
template <typename T>
inline void CopyN(T* dst, const T* src, int64_t n) {
  if (n >= 16) {
    std::memcpy(dst, src, sizeof(T) * n);
    return;
  }
  for (int64_t k = 0; k < n; ++k) dst[k] = src[k];
}

// Adjoint of narrow: x (the narrowed part) zero-padded back to `in` along
// `axis` from `start`. Its own adjoint is the narrow again.
Tensor PadNarrowed(const Tensor& x, const Shape& in, int axis, int64_t start) {
  Op op("pad_narrowed", {x});
  Tensor out = op.NewOutput(in);
  AxisView v(in, axis);
  const int64_t width = x.shape()[axis] * v.inner;
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    std::fill_n(po, in.numel(), T(0));
    const T* px = x.data<T>();
    if (width == 1) {  // one entry per outer index: a strided scatter
      for (int64_t o = 0; o < v.outer; ++o)
        po[(o * v.n + start) * v.inner] = px[o];
      return;
    }
    for (int64_t o = 0; o < v.outer; ++o)
      CopyN(po + (o * v.n + start) * v.inner, px + o * width, width);
  });
  op.SaveInt(axis);
  op.SaveInt(start);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const int axis = static_cast<int>(c.saved_int(0));
    gin[0] = Narrow(g, axis, c.saved_int(1), c.input_shape(0)[axis]);
  });
}
}  // namespace

Tensor Reshape(const Tensor& x, const std::vector<int64_t>& dims) {
  std::vector<int64_t> d = dims;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < d.size(); ++i) {
    if (d[i] == -1) {
      FT_CHECK(infer < 0, "reshape: more than one -1 in [",
               absl::StrJoin(dims, ", "), "]");
      infer = static_cast<int64_t>(i);
    } else {
      known *= d[i];
    }
  }
  if (infer >= 0) d[infer] = known == 0 ? 0 : x.numel() / known;
  Shape s(d);
  FT_CHECK(s.numel() == x.numel(), "reshape: ", x.shape().ToString(), " has ",
           x.numel(), " elements, cannot view as [", absl::StrJoin(dims, ", "),
           "]");
  if (s == x.shape()) return x;
  Op op("reshape", {x});
  Tensor out = op.NewView(0, s);  // zero-copy on the tape
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = Reshape(g, c.input_shape(0).dims());
  });
}

Tensor Permute(const Tensor& x, const std::vector<int>& axes) {
  const int r = x.rank();
  FT_CHECK(static_cast<int>(axes.size()) == r, "permute: ", axes.size(),
           " axes for shape ", x.shape().ToString());
  std::vector<int64_t> od(r);
  std::array<int64_t, 4> in_stride{}, st{0, 0, 0, 0};
  std::vector<bool> seen(r, false);
  int64_t s = 1;
  for (int i = r - 1; i >= 0; --i) {
    in_stride[i] = s;
    s *= x.shape()[i];
  }
  for (int i = 0; i < r; ++i) {
    int a = x.shape().NormalizeAxis(axes[i]);
    FT_CHECK(!seen[a], "permute: repeated axis ", a);
    seen[a] = true;
    od[i] = x.shape()[a];
    st[4 - r + i] = in_stride[a];
  }
  Shape os(od);
  Op op("permute", {x});
  Tensor out = op.NewOutput(os);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    auto d = internal::Padded(os);
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < d[0]; ++i0)
      for (int64_t i1 = 0; i1 < d[1]; ++i1)
        for (int64_t i2 = 0; i2 < d[2]; ++i2) {
          const T* src = px + i0 * st[0] + i1 * st[1] + i2 * st[2];
          for (int64_t i3 = 0; i3 < d[3]; ++i3) po[k++] = src[i3 * st[3]];
        }
  });
  std::vector<int64_t> inv(r);
  for (int i = 0; i < r; ++i) inv[x.shape().NormalizeAxis(axes[i])] = i;
  for (int64_t a : inv) op.SaveInt(a);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    std::vector<int> inv(c.output_shape().rank());
    for (size_t i = 0; i < inv.size(); ++i)
      inv[i] = static_cast<int>(c.saved_int(static_cast<int>(i)));
    gin[0] = Permute(g, inv);
  });
}

Tensor Transpose(const Tensor& x) {
  FT_CHECK(x.rank() >= 2, "transpose: needs rank >= 2, got ",
           x.shape().ToString());
  std::vector<int> axes(x.rank());
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[x.rank() - 1], axes[x.rank() - 2]);
  return Permute(x, axes);
}

Tensor Narrow(const Tensor& x, int axis, int64_t start, int64_t length) {
  axis = x.shape().NormalizeAxis(axis);
  AxisView v(x.shape(), axis);
  FT_CHECK(start >= 0 && length >= 0 && start + length <= v.n, "narrow: [",
           start, ", ", start + length, ") out of range for axis ", axis,
           " of ", x.shape().ToString());
  if (length == v.n) return x;
  Op op("narrow", {x});
  Tensor out = op.NewOutput(x.shape().WithDim(axis, length));
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* px = x.data<T>();
    if (length * v.inner == 1) {  // one entry per outer index: a gather
      for (int64_t o = 0; o < v.outer; ++o)
        po[o] = px[(o * v.n + start) * v.inner];
      return;
    }
    for (int64_t o = 0; o < v.outer; ++o)
      CopyN(po + o * length * v.inner, px + (o * v.n + start) * v.inner,
            length * v.inner);
  });
  op.SaveInt(axis);
  op.SaveInt(start);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = PadNarrowed(g, c.input_shape(0), static_cast<int>(c.saved_int(0)),
                         c.saved_int(1));
  });
}

Tensor Concat(const std::vector<Tensor>& xs, int axis) {
  FT_CHECK(!xs.empty(), "concat: no inputs");
  if (xs.size() == 1) return xs[0];
  const Shape& s0 = xs[0].shape();
  axis = s0.NormalizeAxis(axis);
  int64_t total = 0;
  for (const Tensor& t : xs) {
    FT_CHECK(t.rank() == s0.rank() &&
                 t.shape().WithDim(axis, 1) == s0.WithDim(axis, 1),
             "concat: shapes ", s0.ToString(), " and ", t.shape().ToString(),
             " differ off axis ", axis);
    total += t.shape()[axis];
  }
  Op op("concat", xs);
  Shape os = s0.WithDim(axis, total);
  Tensor out = op.NewOutput(os);
  AxisView v(os, axis);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    int64_t offset = 0;
    for (const Tensor& t : xs) {
      const int64_t n = t.shape()[axis];
      const T* pt = t.data<T>();
      for (int64_t o = 0; o < v.outer; ++o)
        CopyN(po + (o * total + offset) * v.inner, pt + o * n * v.inner,
              n * v.inner);
      offset += n;
    }
  });
  op.SaveInt(axis);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const int axis = static_cast<int>(c.saved_int(0));
    int64_t offset = 0;
    for (int i = 0; i < c.num_inputs(); ++i) {
      const int64_t n = c.input_shape(i)[axis];
      if (c.needs_grad(i)) gin[i] = Narrow(g, axis, offset, n);
      offset += n;
    }
  });
}

namespace {
// out[.., j, ..] (+)= x[.., index[j], ..]; scatter-adds when `scatter`.
template <typename T>
void Gather(const T* px, const Shape& xs, T* po, const Shape& os, int axis,
            const int64_t* index, int64_t count, bool scatter) {
  AxisView vx(xs, axis), vo(os, axis);
  for (int64_t o = 0; o < vx.outer; ++o)
    for (int64_t j = 0; j < count; ++j) {
      if (!scatter) {
        CopyN(po + (o * vo.n + j) * vo.inner,
              px + (o * vx.n + index[j]) * vx.inner, vx.inner);
      } else {
        T* dst = po + (o * vo.n + index[j]) * vo.inner;
        const T* src = px + (o * vx.n + j) * vx.inner;
        for (int64_t k = 0; k < vx.inner; ++k) dst[k] += src[k];
      }
    }
}

// Adjoint of gather: out (shape `in`) accumulates g at the gathered places.
Tensor ScatterAdd(const Tensor& g, const Shape& in, int axis,
                  const std::vector<int64_t>& index) {
  Op op("scatter_add", {g});
  Tensor out = op.NewOutput(in);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    std::fill_n(po, in.numel(), T(0));
    Gather(g.data<T>(), g.shape(), po, in, axis, index.data(),
           static_cast<int64_t>(index.size()), /*scatter=*/true);
  });
  op.SaveInt(axis);
  op.SaveArray(index);
  return op.Finish(out, [](const OpContext& c, const Tensor& gg, Tensor* gin) {
    gin[0] = IndexSelect(gg, static_cast<int>(c.saved_int(0)), c.saved_array());
  });
}
}  // namespace

Tensor IndexSelect(const Tensor& x, int axis,
                   const std::vector<int64_t>& index) {
  axis = x.shape().NormalizeAxis(axis);
  for (int64_t i : index)
    FT_CHECK(i >= 0 && i < x.shape()[axis], "index_select: index ", i,
             " out of range for axis ", axis, " of ", x.shape().ToString());
  Op op("index_select", {x});
  Shape os = x.shape().WithDim(axis, static_cast<int64_t>(index.size()));
  Tensor out = op.NewOutput(os);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Gather(x.data<T>(), x.shape(), out.mutable_data<T>(), os, axis,
           index.data(), static_cast<int64_t>(index.size()),
           /*scatter=*/false);
  });
  op.SaveInt(axis);
  op.SaveArray(index);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = ScatterAdd(g, c.input_shape(0), static_cast<int>(c.saved_int(0)),
                        c.saved_array());
  });
}

Tensor Where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  FT_CHECK(!cond.requires_grad(), "where: the condition must be a constant");
  Shape os = BroadcastShapes(
      "where", BroadcastShapes("where", cond.shape(), a.shape()), b.shape());
  // The condition only selects: any dtype, brought to the values' one.
  Tensor c = BroadcastTo(Cast(cond, a.dtype()), os);
  Tensor ab, bb;
  {
    NoGradScope values_only;
    ab = BroadcastTo(a, os);
    bb = BroadcastTo(b, os);
  }
  Op op("where", {c, a, b});
  Tensor out = op.NewOutput(os);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T *pc = c.data<T>(), *pa = ab.data<T>(), *pb = bb.data<T>();
    for (int64_t i = 0, n = os.numel(); i < n; ++i)
      po[i] = pc[i] != T(0) ? pa[i] : pb[i];
  });
  return op.Finish(out, [](const OpContext& ctx, const Tensor& g, Tensor* gin) {
    Tensor zero = Tensor::Zeros(Shape{}, ctx.dtype());
    if (ctx.needs_grad(1))
      gin[1] = SumTo(Where(ctx.input(0), g, zero), ctx.input_shape(1));
    if (ctx.needs_grad(2))
      gin[2] = SumTo(Where(ctx.input(0), zero, g), ctx.input_shape(2));
  });
}

Tensor Clamp(const Tensor& x, double lo, double hi) {
  FT_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
  return MapUnary(
      "clamp", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        const double lo = c.saved_double(0), hi = c.saved_double(1);
        Tensor inside = Tensor::Empty(c.output_shape(), c.dtype());
        VisitDType(c.dtype(), [&](auto zero) {
          using T = decltype(zero);
          const T* px = c.input_data<T>(0);
          T* pm = inside.mutable_data<T>();
          for (int64_t i = 0, n = inside.numel(); i < n; ++i)
            pm[i] = (px[i] >= lo && px[i] <= hi) ? T(1) : T(0);
        });
        gin[0] = GradMul(g, inside);
      },
      [lo, hi](auto v) {
        using T = decltype(v);
        return std::min(std::max(v, static_cast<T>(lo)), static_cast<T>(hi));
      },
      {lo, hi});
}

}  // namespace flowtape
