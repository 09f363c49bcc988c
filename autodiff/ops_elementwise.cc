// Elementwise ops: value and backward rule side by side (op_kit.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

// The loops below vectorise under GCC -O2 (autodiff/kernels.h).
FLOWTAPE_VECTORIZE_BEGIN
namespace flowtape {
// ---- binary ----
Tensor Add(const Tensor& a, const Tensor& b) {
  return MapBinary(
      "add", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.needs_grad(0)) gin[0] = SumTo(g, c.input_shape(0));
        if (c.needs_grad(1)) gin[1] = SumTo(g, c.input_shape(1));
      },
      [](auto x, auto y) { return x + y; });
}

Tensor Sub(const Tensor& a, const Tensor& b) {
  return MapBinary(
      "sub", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.needs_grad(0)) gin[0] = SumTo(g, c.input_shape(0));
        if (c.needs_grad(1)) gin[1] = SumTo(-g, c.input_shape(1));
      },
      [](auto x, auto y) { return x - y; });
}

namespace {
// da = g * b, db = g * a, zero wherever g is zero (see GradMul).
template <typename T>
[[gnu::noinline]] void MulGradKernel(const T* __restrict g,
                                     const T* __restrict a,
                                     const T* __restrict b, T* __restrict da,
                                     T* __restrict db, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i], ga = gi * b[i], gb = gi * a[i];
    da[i] = gi == T(0) ? T(0) : ga;
    db[i] = gi == T(0) ? T(0) : gb;
  }
}

// Same with a uniform adjoint g (a scalar handed on by Sum, see grad.cc).
template <typename T>
[[gnu::noinline]] void MulGradScalarKernel(T g, const T* __restrict a,
                                           const T* __restrict b,
                                           T* __restrict da, T* __restrict db,
                                           int64_t n) {
  if (g == T(0)) {
    std::fill_n(da, n, T(0));
    std::fill_n(db, n, T(0));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    da[i] = g * b[i];
    db[i] = g * a[i];
  }
}

// Plain (not create_graph) backward of a * b for equal shapes with both
// adjoints wanted: both in one pass, same values as the rule.
bool MulBackwardFused(const OpContext& c, const Tensor& g, Tensor* gin) {
  const Shape& s = c.output_shape();
  if (c.create_graph() || !c.needs_grad(0) || !c.needs_grad(1) ||
      c.input_shape(0) != s || c.input_shape(1) != s)
    return false;
  gin[0] = Tensor::Empty(s, c.dtype());
  gin[1] = Tensor::Empty(s, c.dtype());
  VisitDType(c.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T *a = c.input_data<T>(0), *b = c.input_data<T>(1);
    T *da = gin[0].mutable_data<T>(), *db = gin[1].mutable_data<T>();
    if (g.shape() != s)
      MulGradScalarKernel(static_cast<T>(g.item()), a, b, da, db, s.numel());
    else
      MulGradKernel(g.data<T>(), a, b, da, db, s.numel());
  });
  return true;
}
}  // namespace

Tensor Mul(const Tensor& a, const Tensor& b) {
  return MapBinary(
      "mul", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (MulBackwardFused(c, g, gin)) return;
        if (c.needs_grad(0))
          gin[0] = SumTo(GradMul(g, c.input(1)), c.input_shape(0));
        if (c.needs_grad(1))
          gin[1] = SumTo(GradMul(g, c.input(0)), c.input_shape(1));
      },
      [](auto x, auto y) { return x * y; },
      a.shape() == b.shape() ? kTakesUniformAdjoint : 0);
}

Tensor Div(const Tensor& a, const Tensor& b) {
  return MapBinary(
      "div", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor gb = GradMul(g, 1.0 / c.input(1));  // g / b
        if (c.needs_grad(0)) gin[0] = SumTo(gb, c.input_shape(0));
        if (c.needs_grad(1))
          gin[1] = SumTo(-GradMul(gb, c.output()), c.input_shape(1));
      },
      [](auto x, auto y) { return x / y; });
}

Tensor GradMul(const Tensor& g, const Tensor& d) {
  return MapBinary(
      "grad_mul", g, d,
      [](const OpContext& c, const Tensor& gg, Tensor* gin) {
        if (c.needs_grad(0))
          gin[0] = SumTo(GradMul(gg, c.input(1)), c.input_shape(0));
        if (c.needs_grad(1))
          // d/dd (g*d) = g, and it is zero wherever g is zero anyway.
          gin[1] = SumTo(GradMul(gg, c.input(0)), c.input_shape(1));
      },
      [](auto x, auto y) { return x == 0 ? decltype(x)(0) : x * y; });
}

Tensor operator+(const Tensor& a, const Tensor& b) { return Add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return Sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return Mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return Div(a, b); }
// A double operand becomes a scalar of the tensor's dtype.
Tensor operator+(const Tensor& a, double b) {
  return Add(a, Tensor::Scalar(b, a.dtype()));
}
Tensor operator-(const Tensor& a, double b) {
  return Sub(a, Tensor::Scalar(b, a.dtype()));
}
Tensor operator*(const Tensor& a, double b) {
  return Mul(a, Tensor::Scalar(b, a.dtype()));
}
Tensor operator/(const Tensor& a, double b) {
  return Mul(a, Tensor::Scalar(1.0 / b, a.dtype()));
}
Tensor operator+(double a, const Tensor& b) {
  return Add(Tensor::Scalar(a, b.dtype()), b);
}
Tensor operator-(double a, const Tensor& b) {
  return Sub(Tensor::Scalar(a, b.dtype()), b);
}
Tensor operator*(double a, const Tensor& b) {
  return Mul(Tensor::Scalar(a, b.dtype()), b);
}
Tensor operator/(double a, const Tensor& b) {
  return Div(Tensor::Scalar(a, b.dtype()), b);
}
Tensor operator-(const Tensor& a) { return Neg(a); }

// ---- dtype conversion: y = x in another precision, dx = g converted back --
Tensor Cast(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Op op("cast", {x});
  Tensor out = op.NewOutput(x.shape(), dtype);
  VisitDType(x.dtype(), [&](auto from) {
    using S = decltype(from);
    VisitDType(dtype, [&](auto to) {
      using T = decltype(to);
      const S* px = x.data<S>();
      T* po = out.mutable_data<T>();
      for (int64_t i = 0, n = x.numel(); i < n; ++i)
        po[i] = static_cast<T>(px[i]);
    });
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = Cast(g, c.input(0).dtype());
  });
}

// ---- unary: y = f(x), dx = g * f'(x) ----
Tensor Neg(const Tensor& x) {
  return MapUnary(
      "neg", x,
      [](const OpContext&, const Tensor& g, Tensor* gin) { gin[0] = -g; },
      [](auto v) { return -v; });
}

Tensor Exp(const Tensor& x) {
  return MapArray(
      "exp", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, c.output());
      },
      [](const auto& a) { return a.exp(); });
}

Tensor Log(const Tensor& x) {
  return MapArray(
      "log", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 1.0 / c.input(0));
      },
      [](const auto& a) { return a.log(); });
}

Tensor Log1p(const Tensor& x) {
  return MapArray(
      "log1p", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 1.0 / (c.input(0) + 1.0));
      },
      [](const auto& a) { return a.log1p(); });
}

Tensor Expm1(const Tensor& x) {
  return MapArray(
      "expm1", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, c.output() + 1.0);
      },
      [](const auto& a) { return a.expm1(); });
}

Tensor Sqrt(const Tensor& x) {
  return MapArray(
      "sqrt", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 0.5 / c.output());
      },
      [](const auto& a) { return a.sqrt(); });
}

Tensor Square(const Tensor& x) {
  return MapUnary(
      "square", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 2.0 * c.input(0));
      },
      [](auto v) { return v * v; });
}

Tensor Pow(const Tensor& x, double p) {
  return MapUnary(
      "pow", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        const double p = c.saved_double(0);
        if (p == 0.0) return;  // x^0 = 1: zero gradient (0 x^-1 is NaN at 0)
        gin[0] = GradMul(g, p == 1.0 ? Tensor::Ones(c.output_shape(), c.dtype())
                                     : p * Pow(c.input(0), p - 1.0));
      },
      [p](auto v) { return std::pow(v, static_cast<decltype(v)>(p)); }, {p});
}

Tensor Abs(const Tensor& x) {
  return MapUnary(
      "abs", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor s = Step(c.input(0)) - Step(-c.input(0));  // sign, 0 at 0
        gin[0] = GradMul(g, s);
      },
      [](auto v) { return std::fabs(v); });
}

Tensor Sin(const Tensor& x) {
  return MapUnary(
      "sin", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Cos(c.input(0)));
      },
      [](auto v) { return std::sin(v); });
}

Tensor Cos(const Tensor& x) {
  return MapUnary(
      "cos", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, -Sin(c.input(0)));
      },
      [](auto v) { return std::cos(v); });
}

namespace {
// Vectorised float64 tanh, within 2 ulp of std::tanh (tests/autodiff), with
// one division per element. For a = |x|:
//   a <= 0.625:  tanh a = a + a s P(s) / Q(s), s = a^2 (Cephes' rational);
//   a >  0.625:  tanh a = 1 - 2 / (e^2a + 1) (no cancellation: > 0.55),
//                e^y for y = min(2a, 40) = k ln2 + r, |r| <= ln2 / 2, as a
//                degree-13 Taylor polynomial in r (error < 1e-17) times 2^k
//                written into the exponent bits.
// Each element picks its quotient (P / Q or 2 / (e^2a + 1)) before the one
// division, and the sign is copied back last (tanh(-0) = -0; NaN stays NaN):
// no branches, so the loop vectorises. float32 uses Eigen's vectorised tanh.
void TanhKernel(const double* __restrict x, double* __restrict y, int64_t n) {
  constexpr double kLog2e = 1.44269504088896338700e+00;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // fdlibm's split
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShift = 0x1.8p52;  // adding it rounds to an integer
  uint64_t shift_bits;
  std::memcpy(&shift_bits, &kShift, sizeof(kShift));
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(x[i]), s = a * a;
    // Small branch: P(s), Q(s).
    const double p =
        (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s -
        1.61468768441708447952e3;
    const double q =
        ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s +
        4.84406305325125486048e3;
    // Large branch: e = e^y.
    const double ye = std::min(2.0 * a, 40.0);
    const double kd = ye * kLog2e + kShift;
    const double k = kd - kShift;
    const double r = (ye - k * kLn2Hi) - k * kLn2Lo;
    double e = 1.0 / 6227020800.0;  // 1/13!
    e = e * r + 1.0 / 479001600.0;
    e = e * r + 1.0 / 39916800.0;
    e = e * r + 1.0 / 3628800.0;
    e = e * r + 1.0 / 362880.0;
    e = e * r + 1.0 / 40320.0;
    e = e * r + 1.0 / 5040.0;
    e = e * r + 1.0 / 720.0;
    e = e * r + 1.0 / 120.0;
    e = e * r + 1.0 / 24.0;
    e = e * r + 1.0 / 6.0;
    e = e * r + 0.5;
    e = e * r + 1.0;
    e = e * r + 1.0;
    uint64_t kd_bits;
    std::memcpy(&kd_bits, &kd, sizeof(kd));
    const uint64_t scale_bits = (kd_bits - shift_bits + 1023) << 52;  // 2^k
    double scale;
    std::memcpy(&scale, &scale_bits, sizeof(scale));
    e *= scale;
    const bool small = a <= 0.625;
    const double ratio = (small ? p : 2.0) / (small ? q : e + 1.0);
    const double t = small ? a + a * s * ratio : 1.0 - ratio;
    y[i] = std::copysign(t, x[i]);
  }
}

void TanhKernel(const float* x, float* y, int64_t n) {
  Eigen::Map<Eigen::ArrayXf>(y, n) =
      Eigen::Map<const Eigen::ArrayXf>(x, n).tanh();
}

// dx = g (1 - y^2), zero wherever g is.
template <typename T>
[[gnu::noinline]] void TanhGradKernel(const T* __restrict g,
                                      const T* __restrict y, T* __restrict gx,
                                      int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i], d = gi * (T(1) - y[i] * y[i]);
    gx[i] = gi == T(0) ? T(0) : d;
  }
}

// The adjoint of TanhAdjoint's two inputs for its adjoint a:
// dg = a (1 - y^2), dy = -2 y g a, zero wherever a is.
template <typename T>
[[gnu::noinline]] void TanhAdjointGradKernel(const T* __restrict a,
                                             const T* __restrict g,
                                             const T* __restrict y,
                                             T* __restrict dg, T* __restrict dy,
                                             int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T ai = a[i], vg = ai * (T(1) - y[i] * y[i]),
            vy = T(-2) * y[i] * g[i] * ai;
    dg[i] = ai == T(0) ? T(0) : vg;
    dy[i] = ai == T(0) ? T(0) : vy;
  }
}

// Tanh's adjoint g (1 - y^2) from its output y as one op, so a
// create_graph sweep records one node per tanh rather than three. Its rule
// (dg = a (1 - y^2), dy = -2 y g a) is one fused pass unless recorded.
Tensor TanhAdjoint(const Tensor& g, const Tensor& y) {
  FT_CHECK(g.shape() == y.shape(), "tanh_adjoint: g ", g.shape().ToString(),
           " vs y ", y.shape().ToString());
  Op op("tanh_adjoint", {g, y});
  Tensor out = op.NewOutput(y.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    TanhGradKernel(g.data<T>(), y.data<T>(), out.mutable_data<T>(), y.numel());
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& a, Tensor* gin) {
    if (!c.create_graph() && c.needs_grad(0) && c.needs_grad(1)) {
      gin[0] = Tensor::Empty(c.output_shape(), c.dtype());
      gin[1] = Tensor::Empty(c.output_shape(), c.dtype());
      VisitDType(c.dtype(), [&](auto zero) {
        using T = decltype(zero);
        TanhAdjointGradKernel(a.data<T>(), c.input_data<T>(0),
                              c.input_data<T>(1), gin[0].mutable_data<T>(),
                              gin[1].mutable_data<T>(), a.numel());
      });
      return;
    }
    const Tensor y = c.input(1);
    if (c.needs_grad(0)) gin[0] = TanhAdjoint(a, y);
    if (c.needs_grad(1)) gin[1] = GradMul(a, -2.0 * (y * c.input(0)));
  });
}
}  // namespace

Tensor Tanh(const Tensor& x) {
  Op op("tanh", {x});
  Tensor out = op.NewOutput(x.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    TanhKernel(x.data<T>(), out.mutable_data<T>(), x.numel());
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = TanhAdjoint(g, c.output());
  });
}

Tensor Sigmoid(const Tensor& x) {
  return MapArray(
      "sigmoid", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor y = c.output();
        gin[0] = GradMul(g, y * (1.0 - y));
      },
      // 1 / (1 + e^-x): relative error a few ulp for every x (e^-x overflows
      // to inf below x = -709 (float: -88), giving the limit 0).
      [](const auto& a) {
        using T = typename std::decay_t<decltype(a)>::Scalar;
        return (T(1) + (-a).exp()).inverse();
      });
}

Tensor Softplus(const Tensor& x) {
  return MapArray(
      "softplus", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Sigmoid(c.input(0)));
      },
      // max(x, 0) + log1p(e^-|x|): no overflow, no cancellation.
      [](const auto& a) {
        using T = typename std::decay_t<decltype(a)>::Scalar;
        return a.max(T(0)) + (-a.abs()).exp().log1p();
      });
}

Tensor LogSigmoid(const Tensor& x) {
  return MapArray(
      "log_sigmoid", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Sigmoid(-c.input(0)));
      },
      // -softplus(-x) = min(x, 0) - log1p(e^-|x|).
      [](const auto& a) {
        using T = typename std::decay_t<decltype(a)>::Scalar;
        return a.min(T(0)) - (-a.abs()).exp().log1p();
      });
}

Tensor Step(const Tensor& x) {
  NoGradScope constant;
  return MapUnary("step", x, nullptr, [](auto v) {
    return v > 0 ? decltype(v)(1) : decltype(v)(0);
  });
}

namespace {
// dx = GradMul(g, Step(x)) in one pass, same values.
template <typename T>
[[gnu::noinline]] void ReluGradKernel(const T* __restrict g,
                                      const T* __restrict x, T* __restrict dx,
                                      int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T step = x[i] > 0 ? T(1) : T(0);
    dx[i] = g[i] == T(0) ? T(0) : g[i] * step;
  }
}
}  // namespace

Tensor Relu(const Tensor& x) {
  return MapUnary(
      "relu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (!c.create_graph() && g.shape() == c.input_shape(0)) {
          gin[0] = Tensor::Empty(g.shape(), c.dtype());
          VisitDType(c.dtype(), [&](auto zero) {
            using T = decltype(zero);
            ReluGradKernel(g.data<T>(), c.input_data<T>(0),
                           gin[0].mutable_data<T>(), g.numel());
          });
          return;
        }
        gin[0] = GradMul(g, Step(c.input(0)));
      },
      [](auto v) { return v > 0 ? v : decltype(v)(0); });
}

Tensor Elu(const Tensor& x, double alpha) {
  return MapUnary(
      "elu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        // f' = 1 for x > 0, alpha e^x = y + alpha otherwise.
        Tensor pos = Step(c.input(0));
        Tensor neg_part = Exp(c.input(0) * (1.0 - pos)) * c.saved_double(0);
        gin[0] = GradMul(g, pos + (1.0 - pos) * neg_part);
      },
      [alpha](auto v) {
        using T = decltype(v);
        return v > 0 ? v : static_cast<T>(alpha) * std::expm1(v);
      },
      {alpha});
}

Tensor LeakyRelu(const Tensor& x, double slope) {
  return MapUnary(
      "leaky_relu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor pos = Step(c.input(0));
        gin[0] = GradMul(g, pos + (1.0 - pos) * c.saved_double(0));
      },
      [slope](auto v) {
        return v > 0 ? v : static_cast<decltype(v)>(slope) * v;
      },
      {slope});
}

}  // namespace flowtape
FLOWTAPE_VECTORIZE_END
