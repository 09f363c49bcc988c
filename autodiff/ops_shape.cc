// Shape ops (reshape, permute, narrow, concat, gather, where, clamp): value and
// backward rule side by side.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "absl/strings/str_join.h"
#include "autodiff/check.h"
#include "autodiff/kernels.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {
using internal::NewOutput;
using internal::Record;
using internal::ShouldRecord;

using internal::AxisView;

// dst[0..n) = src[0..n): a plain loop for the short runs of narrow/concat/
// gather on the last axis, where a memcpy call per element dominates.
inline void CopyN(double* dst, const double* src, int64_t n) {
  if (n >= 16) {
    std::memcpy(dst, src, sizeof(double) * n);
    return;
  }
  for (int64_t k = 0; k < n; ++k) dst[k] = src[k];
}

// Adjoint of narrow: x (the narrowed part) zero-padded back to `in` along
// `axis` from `start`. Its own adjoint is the narrow again.
Tensor PadNarrowed(const Tensor& x, const Shape& in, int axis, int64_t start) {
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(in, rec);
  double* po = const_cast<double*>(out.data());
  std::fill_n(po, in.numel(), 0.0);
  AxisView v(in, axis);
  const int64_t width = x.shape()[axis] * v.inner;
  const double* px = x.data();
  for (int64_t o = 0; o < v.outer; ++o)
    CopyN(po + (o * v.n + start) * v.inner, px + o * width, width);
  return Record(out, rec, "pad_narrowed", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  const int axis = static_cast<int>(c.iaux()[0]);
                  gin[0] = Narrow(g, axis, c.iaux()[1],
                                  c.node->inputs[0]->shape[axis]);
                },
                {{}, {axis, start}});
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
  const bool rec = ShouldRecord({&x});
  // Not recording: a constant shares x's storage; a tape value (no storage,
  // its arena memory is reused after a reset) is copied first, like any op.
  if (!rec && x.is_constant()) return Tensor::Alias(x, s);
  if (!rec)
    return Record(Tensor::Alias(x.Detach(), s), rec, "reshape", {&x}, nullptr);
  // Zero-copy on the tape: the node's value aliases the input's.
  Tensor out = Tensor::FromArena(s, const_cast<double*>(x.data()));
  return Record(out, rec, "reshape", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  gin[0] = Reshape(g, c.node->inputs[0]->shape.dims());
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
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(os, rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  auto d = internal::Padded(os);
  int64_t k = 0;
  for (int64_t i0 = 0; i0 < d[0]; ++i0)
    for (int64_t i1 = 0; i1 < d[1]; ++i1)
      for (int64_t i2 = 0; i2 < d[2]; ++i2) {
        const double* src = px + i0 * st[0] + i1 * st[1] + i2 * st[2];
        for (int64_t i3 = 0; i3 < d[3]; ++i3) po[k++] = src[i3 * st[3]];
      }
  OpAux aux;
  int64_t inv[4] = {0, 0, 0, 0};
  for (int i = 0; i < r; ++i) inv[x.shape().NormalizeAxis(axes[i])] = i;
  return Record(out, rec, "permute", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  int r = c.node->shape.rank();
                  std::vector<int> inv(c.iaux(), c.iaux() + r);
                  gin[0] = Permute(g, inv);
                },
                {{}, {inv[0], inv[1], inv[2], inv[3]}});
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
  const bool rec = ShouldRecord({&x});
  Tensor out = NewOutput(x.shape().WithDim(axis, length), rec);
  double* po = const_cast<double*>(out.data());
  const double* px = x.data();
  for (int64_t o = 0; o < v.outer; ++o)
    CopyN(po + o * length * v.inner, px + (o * v.n + start) * v.inner,
          length * v.inner);
  return Record(out, rec, "narrow", {&x},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  gin[0] =
                      PadNarrowed(g, c.node->inputs[0]->shape,
                                  static_cast<int>(c.iaux()[0]), c.iaux()[1]);
                },
                {{}, {axis, start}});
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
  bool rec = false;
  for (const Tensor& t : xs) rec = rec || ShouldRecord({&t});
  Shape os = s0.WithDim(axis, total);
  Tensor out = NewOutput(os, rec);
  AxisView v(os, axis);
  double* po = const_cast<double*>(out.data());
  int64_t offset = 0;
  for (const Tensor& t : xs) {
    int64_t n = t.shape()[axis];
    const double* pt = t.data();
    for (int64_t o = 0; o < v.outer; ++o)
      CopyN(po + (o * total + offset) * v.inner, pt + o * n * v.inner,
            n * v.inner);
    offset += n;
  }
  return internal::RecordN(
      out, rec, "concat", xs,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        int axis = static_cast<int>(c.iaux()[0]);
        int64_t offset = 0;
        for (int i = 0; i < c.num_inputs(); ++i) {
          int64_t n = c.node->inputs[i]->shape[axis];
          if (c.node->inputs[i]->requires_grad)
            gin[i] = Narrow(g, axis, offset, n);
          offset += n;
        }
      },
      {{}, {axis}});
}

namespace {
// index list stored on the tape (arena) for the backward rule.
int64_t* StoreIndex(const std::vector<int64_t>& index) {
  auto* p = static_cast<int64_t*>(Tape::Get().Allocate(
      sizeof(int64_t) * std::max<size_t>(index.size(), 1)));
  std::copy(index.begin(), index.end(), p);
  return p;
}

// out[.., j, ..] (+)= x[.., index[j], ..]; scatter-adds when `scatter`.
void Gather(const double* px, const Shape& xs, double* po, const Shape& os,
            int axis, const int64_t* index, int64_t count, bool scatter) {
  AxisView vx(xs, axis), vo(os, axis);
  for (int64_t o = 0; o < vx.outer; ++o)
    for (int64_t j = 0; j < count; ++j) {
      if (!scatter) {
        CopyN(po + (o * vo.n + j) * vo.inner,
              px + (o * vx.n + index[j]) * vx.inner, vx.inner);
      } else {
        double* dst = po + (o * vo.n + index[j]) * vo.inner;
        const double* src = px + (o * vx.n + j) * vx.inner;
        for (int64_t k = 0; k < vx.inner; ++k) dst[k] += src[k];
      }
    }
}

Tensor ScatterAdd(const Tensor& g, const Shape& in, int axis,
                  const int64_t* index, int64_t count);

void IndexSelectBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  gin[0] =
      ScatterAdd(g, c.node->inputs[0]->shape, static_cast<int>(c.iaux()[0]),
                 reinterpret_cast<const int64_t*>(c.iaux()[1]), c.iaux()[2]);
}

// Adjoint of gather: out (shape `in`) accumulates g at the gathered places.
Tensor ScatterAdd(const Tensor& g, const Shape& in, int axis,
                  const int64_t* index, int64_t count) {
  const bool rec = ShouldRecord({&g});
  Tensor out = NewOutput(in, rec);
  double* po = const_cast<double*>(out.data());
  std::fill_n(po, in.numel(), 0.0);
  Gather(g.data(), g.shape(), po, in, axis, index, count, /*scatter=*/true);
  return Record(out, rec, "scatter_add", {&g},
                [](const OpContext& c, const Tensor& gg, Tensor* gin) {
                  auto* index = reinterpret_cast<const int64_t*>(c.iaux()[1]);
                  std::vector<int64_t> idx(index, index + c.iaux()[2]);
                  gin[0] = IndexSelect(gg, static_cast<int>(c.iaux()[0]), idx);
                },
                {{}, {axis, reinterpret_cast<int64_t>(index), count}});
}
}  // namespace

Tensor IndexSelect(const Tensor& x, int axis,
                   const std::vector<int64_t>& index) {
  axis = x.shape().NormalizeAxis(axis);
  for (int64_t i : index)
    FT_CHECK(i >= 0 && i < x.shape()[axis], "index_select: index ", i,
             " out of range for axis ", axis, " of ", x.shape().ToString());
  const bool rec = ShouldRecord({&x});
  Shape os = x.shape().WithDim(axis, static_cast<int64_t>(index.size()));
  Tensor out = NewOutput(os, rec);
  Gather(x.data(), x.shape(), const_cast<double*>(out.data()), os, axis,
         index.data(), static_cast<int64_t>(index.size()), /*scatter=*/false);
  if (!rec) return Record(out, rec, "index_select", {&x}, nullptr);
  int64_t* stored = StoreIndex(index);
  return Record(out, rec, "index_select", {&x}, IndexSelectBackward,
                {{},
                 {axis, reinterpret_cast<int64_t>(stored),
                  static_cast<int64_t>(index.size())}});
}

Tensor Where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  FT_CHECK(!cond.requires_grad(), "where: the condition must be a constant");
  Shape os = BroadcastShapes(
      "where", BroadcastShapes("where", cond.shape(), a.shape()), b.shape());
  const bool rec = ShouldRecord({&a, &b});
  Tensor c = BroadcastTo(cond, os);
  Tensor ab, bb;
  {
    NoGradScope values_only;
    ab = BroadcastTo(a, os);
    bb = BroadcastTo(b, os);
  }
  Tensor out = NewOutput(os, rec);
  double* po = const_cast<double*>(out.data());
  const double *pc = c.data(), *pa = ab.data(), *pb = bb.data();
  for (int64_t i = 0, n = os.numel(); i < n; ++i)
    po[i] = pc[i] != 0.0 ? pa[i] : pb[i];
  return Record(
      out, rec, "where", {&c, &a, &b},
      [](const OpContext& ctx, const Tensor& g, Tensor* gin) {
        Tensor zero = Tensor::Zeros(Shape{});
        if (ctx.node->inputs[1]->requires_grad)
          gin[1] = SumTo(Where(ctx.in(0), g, zero), ctx.node->inputs[1]->shape);
        if (ctx.node->inputs[2]->requires_grad)
          gin[2] = SumTo(Where(ctx.in(0), zero, g), ctx.node->inputs[2]->shape);
      });
}

Tensor Clamp(const Tensor& x, double lo, double hi) {
  FT_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
  return internal::MapUnary(
      "clamp", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        double lo = c.aux()[0], hi = c.aux()[1];
        Tensor inside = Tensor::Empty(c.node->shape);
        const double* px = c.node->inputs[0]->value;
        double* pm = inside.mutable_data();
        for (int64_t i = 0, n = inside.numel(); i < n; ++i)
          pm[i] = (px[i] >= lo && px[i] <= hi) ? 1.0 : 0.0;
        gin[0] = GradMul(g, inside);
      },
      [lo, hi](double v) { return std::min(std::max(v, lo), hi); }, {{lo, hi}});
}

}  // namespace flowtape
