// Elementwise ops: value and backward rule side by side.
#include <cmath>

#include "autodiff/check.h"
#include "autodiff/kernels.h"
#include "autodiff/ops.h"

namespace flowtape {
using internal::MapBinary;
using internal::MapUnary;

// ---- binary ----
Tensor Add(const Tensor& a, const Tensor& b) {
  return MapBinary("add", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = SumTo(g, c.node->inputs[0]->shape);
        gin[1] = SumTo(g, c.node->inputs[1]->shape);
      },
      [](double x, double y) { return x + y; });
}

Tensor Sub(const Tensor& a, const Tensor& b) {
  return MapBinary("sub", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = SumTo(g, c.node->inputs[0]->shape);
        gin[1] = SumTo(-g, c.node->inputs[1]->shape);
      },
      [](double x, double y) { return x - y; });
}

Tensor Mul(const Tensor& a, const Tensor& b) {
  return MapBinary("mul", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.node->inputs[0]->requires_grad)
          gin[0] = SumTo(GradMul(g, c.in(1)), c.node->inputs[0]->shape);
        if (c.node->inputs[1]->requires_grad)
          gin[1] = SumTo(GradMul(g, c.in(0)), c.node->inputs[1]->shape);
      },
      [](double x, double y) { return x * y; });
}

Tensor Div(const Tensor& a, const Tensor& b) {
  return MapBinary("div", a, b,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor gb = GradMul(g, 1.0 / c.in(1));  // g / b
        if (c.node->inputs[0]->requires_grad)
          gin[0] = SumTo(gb, c.node->inputs[0]->shape);
        if (c.node->inputs[1]->requires_grad)
          gin[1] = SumTo(-GradMul(gb, c.out()), c.node->inputs[1]->shape);
      },
      [](double x, double y) { return x / y; });
}

Tensor GradMul(const Tensor& g, const Tensor& d) {
  return MapBinary("grad_mul", g, d,
      [](const OpContext& c, const Tensor& gg, Tensor* gin) {
        if (c.node->inputs[0]->requires_grad)
          gin[0] = SumTo(GradMul(gg, c.in(1)), c.node->inputs[0]->shape);
        if (c.node->inputs[1]->requires_grad)
          // d/dd (g*d) = g, and it is zero wherever g is zero anyway.
          gin[1] = SumTo(GradMul(gg, c.in(0)), c.node->inputs[1]->shape);
      },
      [](double x, double y) { return x == 0.0 ? 0.0 : x * y; });
}

Tensor operator+(const Tensor& a, const Tensor& b) { return Add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return Sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return Mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return Div(a, b); }
Tensor operator+(const Tensor& a, double b) { return Add(a, Tensor::Scalar(b)); }
Tensor operator-(const Tensor& a, double b) { return Sub(a, Tensor::Scalar(b)); }
Tensor operator*(const Tensor& a, double b) { return Mul(a, Tensor::Scalar(b)); }
Tensor operator/(const Tensor& a, double b) { return Mul(a, Tensor::Scalar(1.0 / b)); }
Tensor operator+(double a, const Tensor& b) { return Add(Tensor::Scalar(a), b); }
Tensor operator-(double a, const Tensor& b) { return Sub(Tensor::Scalar(a), b); }
Tensor operator*(double a, const Tensor& b) { return Mul(Tensor::Scalar(a), b); }
Tensor operator/(double a, const Tensor& b) { return Div(Tensor::Scalar(a), b); }
Tensor operator-(const Tensor& a) { return Neg(a); }

// ---- unary: y = f(x), dx = g * f'(x) ----
Tensor Neg(const Tensor& x) {
  return MapUnary("neg", x,
      [](const OpContext&, const Tensor& g, Tensor* gin) { gin[0] = -g; },
      [](double v) { return -v; });
}

Tensor Exp(const Tensor& x) {
  return MapUnary("exp", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, c.out());
      },
      [](double v) { return std::exp(v); });
}

Tensor Log(const Tensor& x) {
  return MapUnary("log", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 1.0 / c.in(0));
      },
      [](double v) { return std::log(v); });
}

Tensor Log1p(const Tensor& x) {
  return MapUnary("log1p", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 1.0 / (c.in(0) + 1.0));
      },
      [](double v) { return std::log1p(v); });
}

Tensor Expm1(const Tensor& x) {
  return MapUnary("expm1", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, c.out() + 1.0);
      },
      [](double v) { return std::expm1(v); });
}

Tensor Sqrt(const Tensor& x) {
  return MapUnary("sqrt", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 0.5 / c.out());
      },
      [](double v) { return std::sqrt(v); });
}

Tensor Square(const Tensor& x) {
  return MapUnary("square", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, 2.0 * c.in(0));
      },
      [](double v) { return v * v; });
}

Tensor Pow(const Tensor& x, double p) {
  return MapUnary("pow", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        double p = c.aux()[0];
        gin[0] = GradMul(g, p == 1.0 ? Tensor::Ones(c.node->shape)
                                     : p * Pow(c.in(0), p - 1.0));
      },
      [p](double v) { return std::pow(v, p); }, {{p}});
}

Tensor Abs(const Tensor& x) {
  return MapUnary("abs", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor s = Step(c.in(0)) - Step(-c.in(0));  // sign, 0 at 0
        gin[0] = GradMul(g, s);
      },
      [](double v) { return std::fabs(v); });
}

Tensor Sin(const Tensor& x) {
  return MapUnary("sin", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Cos(c.in(0)));
      },
      [](double v) { return std::sin(v); });
}

Tensor Cos(const Tensor& x) {
  return MapUnary("cos", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, -Sin(c.in(0)));
      },
      [](double v) { return std::cos(v); });
}

Tensor Tanh(const Tensor& x) {
  return MapUnary("tanh", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor y = c.out();
        gin[0] = GradMul(g, 1.0 - y * y);
      },
      [](double v) { return std::tanh(v); });
}

namespace {
double StableSigmoid(double v) {
  if (v >= 0) return 1.0 / (1.0 + std::exp(-v));
  double e = std::exp(v);
  return e / (1.0 + e);
}
double StableSoftplus(double v) {
  return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
}
}  // namespace

Tensor Sigmoid(const Tensor& x) {
  return MapUnary("sigmoid", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor y = c.out();
        gin[0] = GradMul(g, y * (1.0 - y));
      },
      StableSigmoid);
}

Tensor Softplus(const Tensor& x) {
  return MapUnary("softplus", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Sigmoid(c.in(0)));
      },
      StableSoftplus);
}

Tensor LogSigmoid(const Tensor& x) {
  return MapUnary("log_sigmoid", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Sigmoid(-c.in(0)));
      },
      [](double v) { return -StableSoftplus(-v); });
}

Tensor Step(const Tensor& x) {
  NoGradScope constant;
  return MapUnary("step", x, nullptr,
                  [](double v) { return v > 0 ? 1.0 : 0.0; });
}

Tensor Relu(const Tensor& x) {
  return MapUnary("relu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        gin[0] = GradMul(g, Step(c.in(0)));
      },
      [](double v) { return v > 0 ? v : 0.0; });
}

Tensor Elu(const Tensor& x, double alpha) {
  return MapUnary("elu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        // f' = 1 for x > 0, alpha e^x = y + alpha otherwise.
        Tensor pos = Step(c.in(0));
        Tensor neg_part = Exp(c.in(0) * (1.0 - pos)) * c.aux()[0];
        gin[0] = GradMul(g, pos + (1.0 - pos) * neg_part);
      },
      [alpha](double v) { return v > 0 ? v : alpha * std::expm1(v); },
      {{alpha}});
}

Tensor LeakyRelu(const Tensor& x, double slope) {
  return MapUnary("leaky_relu", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        Tensor pos = Step(c.in(0));
        gin[0] = GradMul(g, pos + (1.0 - pos) * c.aux()[0]);
      },
      [slope](double v) { return v > 0 ? v : slope * v; }, {{slope}});
}

}  // namespace flowtape
