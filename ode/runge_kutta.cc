#include "ode/runge_kutta.h"

#include <vector>

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::ode {
namespace {

struct Tableau {
  std::vector<double> c;
  std::vector<std::vector<double>> a;  // row i: a_i0 .. a_i(i-1)
  std::vector<double> b;
};

const Tableau& GetTableau(Method m) {
  static const Tableau dopri5{
      {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0},
      {{},
       {1.0 / 5},
       {3.0 / 40, 9.0 / 40},
       {44.0 / 45, -56.0 / 15, 32.0 / 9},
       {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
       {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176,
        -5103.0 / 18656}},
      {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
  static const Tableau rk4{{0.0, 0.5, 0.5, 1.0},
                           {{}, {0.5}, {0.0, 0.5}, {0.0, 0.0, 1.0}},
                           {1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6}};
  static const Tableau euler{{0.0}, {{}}, {1.0}};
  switch (m) {
    case Method::kDopri5:
      return dopri5;
    case Method::kRk4:
      return rk4;
    case Method::kEuler:
      return euler;
  }
  return euler;
}

// y + h * sum_j w_j k_j, skipping zero weights.
Tensor Combine(const Tensor& y, double h, const std::vector<double>& w,
               const std::vector<Tensor>& k) {
  Tensor acc;
  for (size_t j = 0; j < w.size(); ++j) {
    if (w[j] == 0.0) continue;
    Tensor term = k[j] * (h * w[j]);
    acc = acc.defined() ? acc + term : term;
  }
  return acc.defined() ? y + acc : y;
}

}  // namespace

Tensor RkStep(const OdeFn& f, Method method, double t, double h,
              const Tensor& y, int64_t* nfe) {
  const Tableau& tab = GetTableau(method);
  std::vector<Tensor> k;
  for (size_t i = 0; i < tab.c.size(); ++i) {
    Tensor yi = Combine(y, h, tab.a[i], k);
    Tensor ki = f(t + tab.c[i] * h, yi);
    FT_CHECK(ki.shape() == y.shape(), "ode: f(t, y) has shape ",
             ki.shape().ToString(), ", y has ", y.shape().ToString());
    k.push_back(ki);
  }
  if (nfe != nullptr) *nfe += static_cast<int64_t>(tab.c.size());
  return Combine(y, h, tab.b, k);
}

}  // namespace flowtape::ode
