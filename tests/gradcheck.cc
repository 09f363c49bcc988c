#include "tests/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::testing {
namespace {

std::vector<Tensor> AsParams(const std::vector<Tensor>& xs) {
  std::vector<Tensor> ps;
  for (const Tensor& x : xs) {
    Tensor p = x.Detach();
    p.set_requires_grad(true);
    ps.push_back(p);
  }
  return ps;
}

double Eval(const ScalarFn& f, const std::vector<Tensor>& xs) {
  NoGradScope no_grad;
  return f(xs).item();
}

// Relative error; NaN on either side counts as infinitely wrong.
double RelErr(double a, double n) {
  const double e = std::fabs(a - n) / std::max(1.0, std::fabs(n));
  return std::isnan(e) ? INFINITY : e;
}

}  // namespace

double GradientError(const ScalarFn& f, const std::vector<Tensor>& inputs,
                     double h) {
  TapeScope scope;
  std::vector<Tensor> ps = AsParams(inputs);
  std::vector<Tensor> g = Grad({f(ps)}, ps);
  double worst = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    for (int64_t j = 0; j < ps[i].numel(); ++j) {
      double* v = ps[i].mutable_data<double>();
      double old = v[j];
      v[j] = old + h;
      double fp = Eval(f, ps);
      v[j] = old - h;
      double fm = Eval(f, ps);
      v[j] = old;
      worst = std::max(worst, RelErr(g[i][j], (fp - fm) / (2 * h)));
    }
  }
  return worst;
}

double HessianVectorError(const ScalarFn& f, const std::vector<Tensor>& inputs,
                          uint64_t seed, double h) {
  return HessianVectorErrorWithParameters(f, inputs, {}, seed, h);
}

double HessianVectorErrorWithParameters(const ScalarFn& f,
                                        const std::vector<Tensor>& inputs,
                                        const std::vector<Tensor>& params,
                                        uint64_t seed, double h) {
  TapeScope scope;
  Rng rng(seed);
  std::vector<Tensor> ps = AsParams(inputs);
  // The variables: the inputs' leaves, then the parameters.
  std::vector<Tensor> all = ps;
  all.insert(all.end(), params.begin(), params.end());
  std::vector<Tensor> vs;
  for (const Tensor& p : all) vs.push_back(Tensor::Randn(p.shape(), rng));
  std::vector<std::vector<double>> saved;
  for (const Tensor& p : params) saved.push_back(p.ToVector());
  // H v = d/dx (grad(x) . v), by double backward.
  std::vector<Tensor> g = Grad({f(ps)}, all, {}, /*create_graph=*/true);
  Tensor gv = Tensor::Scalar(0.0);
  for (size_t i = 0; i < all.size(); ++i) gv = gv + Sum(g[i] * vs[i]);
  std::vector<Tensor> hv = Grad({gv}, all);
  // Finite differences of the first-order gradient along v.
  auto grad_at = [&](double t) {
    TapeScope inner;
    std::vector<Tensor> xs;
    for (size_t i = 0; i < ps.size(); ++i) {
      Tensor x = (ps[i].Detach() + t * vs[i]).Detach();
      x.set_requires_grad(true);
      xs.push_back(x);
    }
    for (size_t k = 0; k < params.size(); ++k) {
      Tensor p = params[k];
      double* v = p.mutable_data<double>();
      const Tensor& dv = vs[ps.size() + k];
      for (int64_t j = 0; j < p.numel(); ++j) v[j] = saved[k][j] + t * dv[j];
    }
    std::vector<Tensor> at = xs;
    at.insert(at.end(), params.begin(), params.end());
    std::vector<Tensor> gs = Grad({f(xs)}, at);
    for (Tensor& t2 : gs) t2 = t2.Detach();
    for (size_t k = 0; k < params.size(); ++k) {
      Tensor p = params[k];
      std::copy(saved[k].begin(), saved[k].end(), p.mutable_data<double>());
    }
    return gs;
  };
  std::vector<Tensor> gp = grad_at(h), gm = grad_at(-h);
  double worst = 0;
  for (size_t i = 0; i < all.size(); ++i)
    for (int64_t j = 0; j < all[i].numel(); ++j) {
      worst =
          std::max(worst, RelErr(hv[i][j], (gp[i][j] - gm[i][j]) / (2 * h)));
      // The create_graph gradient itself, against the plain one at x (the
      // midpoint, exact to O(h^2)), which GradientError checks against f.
      worst = std::max(worst, RelErr(g[i][j], (gp[i][j] + gm[i][j]) / 2));
    }
  return worst;
}

}  // namespace flowtape::testing
