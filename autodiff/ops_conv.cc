// 2-D convolution (stride 1, zero padding "same", odd kernels): value and
// backward rule side by side.
//
//   y[n,o,h,w] = b[o] + sum_{i,p,q} W[o,i,p,q] x[n,i,h+p-P,w+q-Q]
//   (P = (KH-1)/2, Q = (KW-1)/2; x is zero outside the image)
//
// Values: per image, im2col (cols [Cin*KH*KW, H*W]) and one Eigen GEMM
// W[Cout, Cin*KH*KW] cols, or, when Cout < Cin, one GEMM and col2im (see
// UseShiftAdd). Backward, with F(W)[i,o,p,q] = W[o,i,KH-1-p,KW-1-q] (flip the
// kernel, swap channels):
//   gx = conv(g, F(W))                (exact for odd kernels with "same")
//   gW = wgrad(x, g)[o,i,p,q] = sum_{n,h,w} g[n,o,h,w] x[n,i,h+p-P,w+q-Q]
//   gb = sum of g over n, h, w          (adjoint: broadcast)
// wgrad is bilinear too: its adjoints are gx = conv(g, F(G)), gg = conv(x, G),
// and F is its own adjoint, so conv, wgrad and F close under differentiation:
// gradients to any order.
#include <Eigen/Dense>
#include <algorithm>
#include <cstring>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/gemm.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {

// cols[(c*kh + p)*kw + q, y*w + x] = img[c, y+p-kh/2, x+q-kw/2] (0 outside).
template <typename T>
void Im2Col(const T* img, int64_t c, int64_t h, int64_t w, int64_t kh,
            int64_t kw, T* cols) {
  const int64_t ph = kh / 2, pw = kw / 2;
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t p = 0; p < kh; ++p)
      for (int64_t q = 0; q < kw; ++q) {
        T* row = cols + ((ci * kh + p) * kw + q) * h * w;
        // Output columns x with 0 <= x + q - pw < w.
        const int64_t lo = std::max<int64_t>(0, pw - q);
        const int64_t hi = std::min<int64_t>(w, w + pw - q);
        for (int64_t y = 0; y < h; ++y) {
          T* dst = row + y * w;
          const int64_t sy = y + p - ph;
          if (sy < 0 || sy >= h || hi <= lo) {
            std::fill_n(dst, w, T(0));
            continue;
          }
          std::fill_n(dst, lo, T(0));
          std::memcpy(dst + lo, img + (ci * h + sy) * w + lo + q - pw,
                      sizeof(T) * (hi - lo));
          std::fill_n(dst + hi, w - hi, T(0));
        }
      }
}

// Columns of image n (x itself for 1x1 kernels, else im2col into scratch).
template <typename T>
const T* Columns(const Tensor& x, int64_t n, int64_t kh, int64_t kw,
                 std::vector<T>& scratch) {
  const int64_t c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const T* img = x.data<T>() + n * c * h * w;
  if (kh == 1 && kw == 1) return img;
  scratch.resize(c * kh * kw * h * w);
  Im2Col(img, c, h, w, kh, kw, scratch.data());
  return scratch.data();
}

// Adjoint of Im2Col (col2im): img[c, y+p-kh/2, x+q-kw/2] += cols[(c*kh + p)*kw
// + q, y*w + x], for an img that is already initialised.
template <typename T>
void Col2ImAdd(const T* cols, int64_t c, int64_t h, int64_t w, int64_t kh,
               int64_t kw, T* img) {
  const int64_t ph = kh / 2, pw = kw / 2;
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t p = 0; p < kh; ++p)
      for (int64_t q = 0; q < kw; ++q) {
        const T* row = cols + ((ci * kh + p) * kw + q) * h * w;
        const int64_t lo = std::max<int64_t>(0, pw - q);
        const int64_t hi = std::min<int64_t>(w, w + pw - q);
        for (int64_t y = 0; y < h; ++y) {
          const int64_t sy = y + p - ph;
          if (sy < 0 || sy >= h) continue;
          T* dst = img + (ci * h + sy) * w;
          const T* src = row + y * w;
          for (int64_t x = lo; x < hi; ++x) dst[x + q - pw] += src[x];
        }
      }
}

// The two ways to evaluate y = conv(x, w) per image (same result):
//  A: y = W[Cout, Cin*K] im2col(x)           im2col over Cin*K rows;
//  B: y = shift-add of V[Cout*K, Cin] x       over Cout*K rows, where the
//     shift-add is col2im of the flipped kernel: y[o,h,w] gets
//     (V x)[(o,p,q), h-p+P, w-q+Q] with V[(o,p,q), i] = W[o,i,KH-1-p,KW-1-q].
// B moves less memory when Cout < Cin (e.g. the input gradient of a wide
// layer), so the value code picks the cheaper one.
bool UseShiftAdd(int64_t cin, int64_t cout, int64_t kh, int64_t kw) {
  return cout < cin && kh * kw > 1;
}

Tensor ConvCore(const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor WeightGrad(const Tensor& x, const Tensor& g, int64_t kh, int64_t kw);

// F(W)[i,o,p,q] = W[o,i,KH-1-p,KW-1-q]; an involution, so its own adjoint.
Tensor FlipSwap(const Tensor& w) {
  const int64_t co = w.dim(0), ci = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  Op op("conv2d_flip", {w});
  Tensor out = op.NewOutput(Shape{ci, co, kh, kw});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* pw = w.data<T>();
    for (int64_t o = 0; o < co; ++o)
      for (int64_t i = 0; i < ci; ++i)
        for (int64_t p = 0; p < kh; ++p)
          for (int64_t q = 0; q < kw; ++q)
            po[((i * co + o) * kh + kh - 1 - p) * kw + kw - 1 - q] =
                pw[((o * ci + i) * kh + p) * kw + q];
  });
  return op.Finish(out, [](const OpContext&, const Tensor& g, Tensor* gin) {
    gin[0] = FlipSwap(g);
  });
}

// gb[o] = sum_{n,h,w} g[n,o,h,w]; adjoint: broadcast back over n, h, w.
Tensor BiasGrad(const Tensor& g) {
  const int64_t n = g.dim(0), c = g.dim(1), hw = g.dim(2) * g.dim(3);
  Op op("conv2d_bias_grad", {g});
  Tensor out = op.NewOutput(Shape{c});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* pg = g.data<T>();
    for (int64_t o = 0; o < c; ++o) {
      T s = 0;
      for (int64_t b = 0; b < n; ++b)
        s += internal::SumOf(pg + (b * c + o) * hw, hw);
      po[o] = s;
    }
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& gg, Tensor* gin) {
    const Shape& gs = c.input_shape(0);
    gin[0] = BroadcastTo(Reshape(gg, {1, gs[1], 1, 1}), gs);
  });
}

void ConvBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  if (c.needs_grad(0)) gin[0] = ConvCore(g, FlipSwap(c.input(1)), Tensor());
  if (c.needs_grad(1))
    gin[1] =
        WeightGrad(c.input(0), g, c.input_shape(1)[2], c.input_shape(1)[3]);
  if (c.num_inputs() == 3 && c.needs_grad(2)) gin[2] = BiasGrad(g);
}

// y = conv(x, w) (+ bias); shapes already checked.
Tensor ConvCore(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const int64_t k = cin * kh * kw, hw = h * wd;
  Op op("conv2d", {x, w, bias});
  Tensor out = op.NewOutput(Shape{n, cout, h, wd});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    std::vector<T> scratch;
    if (UseShiftAdd(cin, cout, kh, kw)) {
      // V[(o,p,q), i] = W[o,i,KH-1-p,KW-1-q]
      RowMatrixT<T> v(cout * kh * kw, cin);
      const T* pw = w.data<T>();
      for (int64_t o = 0; o < cout; ++o)
        for (int64_t i = 0; i < cin; ++i)
          for (int64_t p = 0; p < kh; ++p)
            for (int64_t q = 0; q < kw; ++q)
              v((o * kh + kh - 1 - p) * kw + kw - 1 - q, i) =
                  pw[((o * cin + i) * kh + p) * kw + q];
      scratch.resize(cout * kh * kw * hw);
      for (int64_t b = 0; b < n; ++b) {
        internal::Gemm(v.data(), cout * kh * kw, cin, false,
                       x.data<T>() + b * cin * hw, cin, hw, false,
                       scratch.data());
        T* y = po + b * cout * hw;
        for (int64_t o = 0; o < cout; ++o)
          std::fill_n(y + o * hw, hw, pb != nullptr ? pb[o] : T(0));
        Col2ImAdd(scratch.data(), cout, h, wd, kh, kw, y);
      }
    } else {
      for (int64_t b = 0; b < n; ++b) {
        internal::Gemm(w.data<T>(), cout, k, false,
                       Columns(x, b, kh, kw, scratch), k, hw, false,
                       po + b * cout * hw);
        MatrixMapT<T> y(po + b * cout * hw, cout, hw);
        if (pb != nullptr)
          y.colwise() +=
              Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(pb, cout);
      }
    }
  });
  return op.Finish(out, ConvBackward);
}

// gW[o,i,p,q] = sum_{n,h,w} g[n,o,h,w] x[n,i,h+p-P,w+q-Q].
Tensor WeightGrad(const Tensor& x, const Tensor& g, int64_t kh, int64_t kw) {
  const int64_t n = x.dim(0), cin = x.dim(1), hw = x.dim(2) * x.dim(3);
  const int64_t cout = g.dim(1), k = cin * kh * kw;
  Op op("conv2d_wgrad", {x, g});
  Tensor out = op.NewOutput(Shape{cout, cin, kh, kw});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    MatrixMapT<T> gw(out.mutable_data<T>(), cout, k);
    gw.setZero();
    std::vector<T> scratch;
    if (UseShiftAdd(cin, cout, kh, kw)) {
      // With u = im2col(g): gW[o,i,p,q] = sum_hw u[(o,KH-1-p,KW-1-q), hw]
      // x[i,hw].
      RowMatrixT<T> acc = RowMatrixT<T>::Zero(cout * kh * kw, cin);
      for (int64_t b = 0; b < n; ++b)
        internal::Gemm(Columns(g, b, kh, kw, scratch), cout * kh * kw, hw,
                       false, x.data<T>() + b * cin * hw, cin, hw, true,
                       acc.data(), /*accumulate=*/true);
      for (int64_t o = 0; o < cout; ++o)
        for (int64_t i = 0; i < cin; ++i)
          for (int64_t p = 0; p < kh; ++p)
            for (int64_t q = 0; q < kw; ++q)
              gw(o, (i * kh + p) * kw + q) =
                  acc((o * kh + kh - 1 - p) * kw + kw - 1 - q, i);
    } else {
      for (int64_t b = 0; b < n; ++b)
        internal::Gemm(g.data<T>() + b * cout * hw, cout, hw, false,
                       Columns(x, b, kh, kw, scratch), k, hw, true, gw.data(),
                       /*accumulate=*/true);
    }
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& gg, Tensor* gin) {
    if (c.needs_grad(0)) gin[0] = ConvCore(c.input(1), FlipSwap(gg), Tensor());
    if (c.needs_grad(1)) gin[1] = ConvCore(c.input(0), gg, Tensor());
  });
}
}  // namespace

Tensor Conv2d(const Tensor& x, const Tensor& w, const Tensor& bias) {
  FT_CHECK(x.rank() == 4 && w.rank() == 4 && x.dim(1) == w.dim(1),
           "conv2d: want x [N, Cin, H, W] and w [Cout, Cin, KH, KW], got ",
           x.shape().ToString(), " and ", w.shape().ToString());
  FT_CHECK(w.dim(2) % 2 == 1 && w.dim(3) % 2 == 1,
           "conv2d: \"same\" padding needs odd kernel sizes, got w ",
           w.shape().ToString());
  FT_CHECK(!bias.defined() || bias.shape() == Shape{w.dim(0)}, "conv2d: bias ",
           bias.shape().ToString(), " does not match w ", w.shape().ToString());
  return ConvCore(x, w, bias);
}

}  // namespace flowtape
