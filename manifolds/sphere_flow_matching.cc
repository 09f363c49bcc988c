#include "manifolds/sphere_flow_matching.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::manifolds {
namespace {

using flows::FlowResult;
using flows::cnf::CnfDynamics;

void CheckPair(const char* op, const Tensor& a, const Tensor& b) {
  FT_CHECK(a.rank() == 2 && a.shape() == b.shape(), op, ": ",
           a.shape().ToString(), " vs ", b.shape().ToString(),
           " (expected two [N, n])");
}

double Dot(const std::vector<double>& a, const std::vector<double>& b,
           int64_t row, int64_t n) {
  double s = 0;
  for (int64_t k = 0; k < n; ++k) s += a[row * n + k] * b[row * n + k];
  return s;
}

// exp_x(t v) and its t-derivative for rows x, v (v tangent at x).
void Geodesic(const std::vector<double>& x, const std::vector<double>& v,
              const std::vector<double>& t, int64_t n, std::vector<double>* xt,
              std::vector<double>* ut) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  xt->assign(x.size(), 0);
  if (ut) ut->assign(x.size(), 0);
  for (int64_t i = 0; i < rows; ++i) {
    const double len = std::sqrt(Dot(v, v, i, n)), a = t[i] * len;
    // sin(a) / len -> t as len -> 0.
    const double sinc = len > 0 ? std::sin(a) / len : t[i];
    for (int64_t k = 0; k < n; ++k) {
      (*xt)[i * n + k] = std::cos(a) * x[i * n + k] + sinc * v[i * n + k];
      if (ut)
        (*ut)[i * n + k] =
            -len * std::sin(a) * x[i * n + k] + std::cos(a) * v[i * n + k];
    }
  }
}

std::vector<double> LogRows(const std::vector<double>& x,
                            const std::vector<double>& y, int64_t n) {
  const int64_t rows = static_cast<int64_t>(x.size()) / n;
  std::vector<double> out(x.size(), 0);
  for (int64_t i = 0; i < rows; ++i) {
    const double c = Dot(x, y, i, n);
    double w2 = 0;
    for (int64_t k = 0; k < n; ++k) {
      const double w = y[i * n + k] - c * x[i * n + k];
      w2 += w * w;
    }
    const double w = std::sqrt(w2);
    if (w == 0) continue;  // y = x (0) or the cut locus y = -x (undefined)
    const double theta = std::atan2(w, c);
    for (int64_t k = 0; k < n; ++k)
      out[i * n + k] = theta / w * (y[i * n + k] - c * x[i * n + k]);
  }
  return out;
}

FlowResult Failed(const Tensor& x, absl::Status status) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  FlowResult r(Tensor::Full(x.shape(), nan, x.dtype()),
               Tensor::Full({x.rank() > 0 ? x.dim(0) : 1}, nan, x.dtype()));
  r.status = std::move(status);
  return r;
}

}  // namespace

Tensor SphereExp(const Tensor& x, const Tensor& v) {
  CheckPair("sphere_exp", x, v);
  const int64_t n = x.dim(1);
  std::vector<double> out;
  Geodesic(x.ToVector(), v.ToVector(), std::vector<double>(x.dim(0), 1.0), n,
           &out, nullptr);
  return Tensor::FromVector(x.shape(), out, x.dtype());
}

Tensor SphereLog(const Tensor& x, const Tensor& y) {
  CheckPair("sphere_log", x, y);
  return Tensor::FromVector(
      x.shape(), LogRows(x.ToVector(), y.ToVector(), x.dim(1)), x.dtype());
}

Tensor ProjectToTangent(const Tensor& z, const Tensor& v) {
  CheckPair("project_to_tangent", z, v);
  return v - z * (Sum(z * v, 1, true) / Sum(Square(z), 1, true));
}

flows::matching::PathSample GeodesicSpherePath::Sample(const Tensor& x0,
                                                       const Tensor& x1,
                                                       const Tensor& t) const {
  CheckPair("sphere_geodesic_path", x0, x1);
  FT_CHECK(t.rank() == 2 && t.dim(0) == x0.dim(0) && t.dim(1) == 1,
           "sphere_geodesic_path: t ", t.shape().ToString(), " for x0 ",
           x0.shape().ToString());
  const int64_t n = x0.dim(1);
  const std::vector<double> a = x0.ToVector();
  std::vector<double> xt, ut;
  Geodesic(a, LogRows(a, x1.ToVector(), n), t.ToVector(), n, &xt, &ut);
  return {Tensor::FromVector(x0.shape(), xt, x0.dtype()),
          Tensor::FromVector(x0.shape(), ut, x0.dtype())};
}

flows::matching::SourceSampler UniformSphereSource(int64_t n) {
  return [n](int64_t rows, DType dtype, Rng& rng) {
    NoGradScope no_grad;
    Tensor g = Tensor::Randn({rows, n}, rng, dtype);
    return g / Sqrt(Sum(Square(g), 1, true));
  };
}

TangentProjectedField::TangentProjectedField(
    std::shared_ptr<CnfDynamics> velocity)
    : velocity_(RegisterModule("velocity", std::move(velocity))) {}

Tensor TangentProjectedField::operator()(double t, const Tensor& z) const {
  return ProjectToTangent(z, (*velocity_)(t, z));
}

Tensor TangentProjectedField::operator()(const Tensor& t, const Tensor& z,
                                         const Tensor& context) const {
  return ProjectToTangent(z, (*velocity_)(t, z, context));
}

namespace {
constexpr int kTimeFrequencies = 4;
}  // namespace

absl::StatusOr<std::shared_ptr<FourierFeatureField>>
FourierFeatureField::Create(int64_t dim, int64_t features, double scale,
                            const std::vector<int64_t>& hidden,
                            nn::Activation act, Rng& rng) {
  bool widths_ok = true;
  for (int64_t h : hidden) widths_ok = widths_ok && h >= 1;
  if (dim < 1 || features < 1 || !widths_ok || !(scale > 0) ||
      !std::isfinite(scale))
    return absl::InvalidArgumentError(absl::StrCat(
        "fourier_feature_field: want dim, features and widths >= 1 and a "
        "finite scale > 0, got dim ",
        dim, ", features ", features, ", scale ", scale));
  return std::shared_ptr<FourierFeatureField>(
      new FourierFeatureField(dim, features, scale, hidden, act, rng));
}

FourierFeatureField::FourierFeatureField(int64_t dim, int64_t features,
                                         double scale,
                                         const std::vector<int64_t>& hidden,
                                         nn::Activation act, Rng& rng)
    : dim_(dim) {
  std::vector<double> b(dim * features);
  for (double& v : b) v = scale * rng.Normal();
  frequencies_ =
      RegisterBuffer("frequencies", Tensor::FromVector({dim, features}, b));
  std::vector<int64_t> sizes = {dim + 2 * features + 1 + 2 * kTimeFrequencies};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(dim);
  mlp_ = RegisterModule("mlp", nn::MLP::Create(sizes, act, rng).value());
}

Tensor FourierFeatureField::operator()(double t, const Tensor& z) const {
  return (*this)(Tensor::Scalar(t, z.dtype()), z, Tensor());
}

Tensor FourierFeatureField::operator()(const Tensor& t, const Tensor& z,
                                       const Tensor& context) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == dim_ && !context.defined(),
           "fourier_feature_field: z ", z.shape().ToString(), " (want [N, ",
           dim_, "], no context)");
  const int64_t n = z.dim(0);
  FT_CHECK(t.numel() == 1 || (t.rank() == 2 && t.dim(0) == n && t.dim(1) == 1),
           "fourier_feature_field: t ", t.shape().ToString(), " for z ",
           z.shape().ToString());
  const Tensor tt =
      t.numel() == 1 ? BroadcastTo(Reshape(t, {1, 1}), {n, 1}) : t;
  const Tensor zb = MatMul(z, frequencies_);
  std::vector<Tensor> parts = {z, Sin(zb), Cos(zb), tt};
  for (int k = 1; k <= kTimeFrequencies; ++k) {
    parts.push_back(Sin(tt * (M_PI * k)));
    parts.push_back(Cos(tt * (M_PI * k)));
  }
  return (*mlp_)(Concat(parts, 1));
}

absl::StatusOr<std::shared_ptr<SphereCnf>> SphereCnf::Create(
    std::shared_ptr<CnfDynamics> field, double step_size) {
  if (field == nullptr)
    return absl::InvalidArgumentError("sphere_cnf: null field");
  if (!(step_size > 0 && step_size <= 1))
    return absl::InvalidArgumentError(absl::StrCat(
        "sphere_cnf: step_size must be in (0, 1], got ", step_size));
  return std::shared_ptr<SphereCnf>(new SphereCnf(std::move(field), step_size));
}

SphereCnf::SphereCnf(std::shared_ptr<CnfDynamics> field, double step_size)
    : field_(RegisterModule("field", std::move(field))),
      step_size_(step_size) {}

FlowResult SphereCnf::Run(const Tensor& x, const Tensor& context,
                          bool forward) const {
  const int64_t d = field_->dim(), k = field_->context_dim();
  if (x.rank() != 2 || x.dim(1) != d)
    return Failed(x, absl::InvalidArgumentError(
                         absl::StrCat("sphere_cnf: input must be [N, ", d,
                                      "], got ", x.shape().ToString())));
  if ((k == 0) == context.defined() ||
      (k > 0 && (context.rank() != 2 || context.dim(0) != x.dim(0) ||
                 context.dim(1) != k)))
    return Failed(x, absl::InvalidArgumentError(absl::StrCat(
                         "sphere_cnf: context must be ",
                         k == 0 ? "absent" : absl::StrCat("[N, ", k, "]"))));
  const int64_t n = x.dim(0);
  const DType dtype = x.dtype();
  const bool build = Tape::Get().grad_enabled();
  std::vector<Tensor> units;
  for (int64_t i = 0; i < d; ++i)
    units.push_back(Tensor::UnitColumn(n, d, i, dtype));
  // (F(s, z), div F(s, z) [N, 1]).
  auto field = [&](double s, const Tensor& z) -> std::pair<Tensor, Tensor> {
    auto eval = [&](const Tensor& at, bool graph) {
      Tensor zz = at;
      if (!graph || !zz.requires_grad()) {
        zz = at.Detach();
        zz.set_requires_grad(true);
      }
      Tensor fz = (*field_)(Tensor::Scalar(s, dtype), zz, context);
      Tensor div;
      for (int64_t i = 0; i < d; ++i) {
        Tensor di = GradColumns({fz}, zz, i, 1, {units[i]}, graph);
        div = div.defined() ? div + di : di;
      }
      return std::make_pair(fz, div);
    };
    if (build) return eval(z, true);
    EnableGradScope grad_on;
    TapeScope scope;
    auto [fz, div] = eval(z, false);
    return {fz.Detach(), div.Detach()};
  };
  const int64_t steps =
      static_cast<int64_t>(std::ceil(1.0 / step_size_ - 1e-9));
  const double h = (forward ? -1.0 : 1.0) / steps;
  Tensor z = x, l = Tensor::Zeros({n, 1}, dtype);
  for (int64_t j = 0; j < steps; ++j) {
    const double s = forward ? 1.0 - j * (1.0 / steps) : j * (1.0 / steps);
    auto [k1, d1] = field(s, z);
    auto [k2, d2] = field(s + h / 2, z + k1 * (h / 2));
    auto [k3, d3] = field(s + h / 2, z + k2 * (h / 2));
    auto [k4, d4] = field(s + h, z + k3 * h);
    Tensor next = z + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6);
    z = next / Sqrt(Sum(Square(next), 1, true));
    l = l + (d1 + d2 * 2.0 + d3 * 2.0 + d4) * (h / 6);
  }
  FlowResult r(z, Reshape(l, {n}));
  r.AddExtra(flows::cnf::kNfe,
             Tensor::Full({n}, static_cast<double>(4 * steps), dtype));
  return r;
}

FlowResult SphereCnf::Forward(const Tensor& x, const Tensor& context,
                              Rng*) const {
  return Run(x, context, true);
}

FlowResult SphereCnf::Inverse(const Tensor& z, const Tensor& context,
                              Rng*) const {
  return Run(z, context, false);
}

}  // namespace flowtape::manifolds
