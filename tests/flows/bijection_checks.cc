#include "tests/flows/bijection_checks.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::testing {
namespace {

// max(worst, e) with NaN as +inf, so a NaN error can never pass a check.
double Worse(double worst, double e) {
  return std::isnan(e) ? INFINITY : std::max(worst, e);
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = Worse(worst, std::fabs(a[i] - b[i]));
  return worst;
}

Tensor Flat(const Tensor& t) { return Reshape(t, {t.dim(0), -1}); }

double Nll(const flows::Flow& f, const Tensor& x, const Tensor& context) {
  NoGradScope no_grad;
  flows::FlowResult r = f.Forward(x, context);
  return Mean(0.5 * Sum(Square(Flat(r.value)), 1) - r.logdet).item();
}

}  // namespace

double RoundTripError(const flows::Flow& f, const Tensor& x,
                      const Tensor& context) {
  NoGradScope no_grad;
  Tensor z = f.Forward(x, context).value;
  double e = MaxAbsDiff(f.Inverse(z, context).value, x);
  // The other way round, from base points near (not equal to) z.
  Tensor z2 = z * 0.9;
  Tensor x2 = f.Inverse(z2, context).value;
  return Worse(e, MaxAbsDiff(f.Forward(x2, context).value, z2));
}

double LogdetError(const flows::Flow& f, const Tensor& x,
                   const Tensor& context) {
  TapeScope scope;
  const Shape shape = x.shape();
  Tensor logdet;
  TensorFn fn = [&](const Tensor& flat) {
    flows::FlowResult r = f.Forward(Reshape(flat, shape.dims()), context);
    logdet = r.logdet;
    return Flat(r.value);
  };
  Tensor jac = BatchJacobian(fn, Flat(x));  // [N, D, D]
  const int64_t n = jac.dim(0), d = jac.dim(1);
  const std::vector<double> jac_values = jac.ToVector();
  double worst = 0;
  for (int64_t k = 0; k < n; ++k) {
    Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic,
                                   Eigen::RowMajor>>
        j(jac_values.data() + k * d * d, d, d);
    double brute = std::log(std::fabs(j.fullPivLu().determinant()));
    worst = Worse(worst, std::fabs(brute - logdet[k]));
  }
  return worst;
}

double AntisymmetryError(const flows::Flow& f, const Tensor& x,
                         const Tensor& context) {
  NoGradScope no_grad;
  flows::FlowResult fw = f.Forward(x, context);
  flows::FlowResult inv = f.Inverse(fw.value, context);
  return MaxAbsDiff(fw.logdet, -inv.logdet);
}

double ParamGradError(const flows::Flow& f, const Tensor& x,
                      const Tensor& context, int max_coords) {
  std::vector<Tensor> ps = f.Parameters();
  std::vector<Tensor> g;
  {
    TapeScope scope;
    flows::FlowResult r = f.Forward(x, context);
    Tensor loss = Mean(0.5 * Sum(Square(Flat(r.value)), 1) - r.logdet);
    for (Tensor& t : Grad({loss}, ps)) g.push_back(t.Detach());
  }
  const double h = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t n = ps[i].numel();
    const int64_t step = std::max<int64_t>(1, n / max_coords);
    for (int64_t j = 0; j < n; j += step) {
      double* v = ps[i].mutable_data<double>();
      const double old = v[j];
      v[j] = old + h;
      const double fp = Nll(f, x, context);
      v[j] = old - h;
      const double fm = Nll(f, x, context);
      v[j] = old;
      const double num = (fp - fm) / (2 * h);
      worst = Worse(worst,
                    std::fabs(g[i][j] - num) / std::max(1.0, std::fabs(num)));
    }
  }
  return worst;
}

void Perturb(flows::Flow& f, double scale, Rng& rng) {
  for (Tensor p : f.Parameters()) {
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] += scale * rng.Normal();
  }
}

}  // namespace flowtape::testing
