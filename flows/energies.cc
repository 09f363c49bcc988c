#include "flows/energies.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {

constexpr double kPi = 3.14159265358979323846;

// -log(exp(-a^2/2) + exp(-b^2/2)), stably, for [N] tensors a and b.
Tensor NegLogSumGauss(const Tensor& a, const Tensor& b) {
  Tensor e = Concat(
      {Reshape(-0.5 * Square(a), {-1, 1}), Reshape(-0.5 * Square(b), {-1, 1})},
      1);
  return -LogSumExp(e, 1);
}

Tensor Column(const Tensor& x, int64_t i) {
  return Reshape(Narrow(x, 1, i, 1), {-1});
}

}  // namespace

void Energy::CheckInput(const char* op, const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == dim(), op, ": x ", x.shape().ToString(),
           ", want [N, ", dim(), "] (", name(), ")");
}

std::pair<Tensor, Tensor> Energy::ValueAndGradient(const Tensor& x) const {
  if (Tape::Get().grad_enabled()) {
    // x itself when it is on a differentiable path, else a leaf copy.
    Tensor xd = x;
    if (!x.requires_grad()) xd = x.Detach().set_requires_grad(true);
    Tensor u = Value(xd);
    return {u, Grad({u}, {xd}, {}, /*create_graph=*/true)[0]};
  }
  // Recording off: differentiate on a sub-tape, keep the values.
  TapeScope scope;
  EnableGradScope on;
  Tensor xd = x.Detach().set_requires_grad(true);
  Tensor u = Value(xd);
  Tensor g = Grad({u}, {xd})[0];
  return {u.Detach(), g.Detach()};
}

Tensor Energy::Gradient(const Tensor& x) const {
  return ValueAndGradient(x).second;
}

absl::StatusOr<std::shared_ptr<RezendeEnergy>> RezendeEnergy::Create(
    const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  const Kind kinds[] = {Kind::kU1, Kind::kU2, Kind::kU3, Kind::kU4};
  for (int i = 0; i < 4; ++i)
    if (n == absl::StrCat("u", i + 1))
      return std::make_shared<RezendeEnergy>(kinds[i]);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown energy '", name, "'; expected u1, u2, u3 or u4"));
}

std::string RezendeEnergy::name() const {
  return absl::StrCat("u", static_cast<int>(kind_) + 1);
}

Tensor RezendeEnergy::Value(const Tensor& x) const {
  CheckInput("rezende_energy", x);
  Tensor z1 = Column(x, 0), z2 = Column(x, 1);
  Tensor w1 = Sin((2.0 * kPi / 4.0) * z1);
  switch (kind_) {
    case Kind::kU1: {
      Tensor r = Sqrt(Square(z1) + Square(z2));
      return 0.5 * Square((r - 2.0) / 0.4) +
             NegLogSumGauss((z1 - 2.0) / 0.6, (z1 + 2.0) / 0.6);
    }
    case Kind::kU2:
      return 0.5 * Square((z2 - w1) / 0.4);
    case Kind::kU3: {
      Tensor w2 = 3.0 * Exp(-0.5 * Square((z1 - 1.0) / 0.6));
      return NegLogSumGauss((z2 - w1) / 0.35, (z2 - w1 + w2) / 0.35);
    }
    case Kind::kU4: {
      Tensor w3 = 3.0 * Sigmoid((z1 - 1.0) / 0.3);
      return NegLogSumGauss((z2 - w1) / 0.4, (z2 - w1 + w3) / 0.35);
    }
  }
  return Tensor();
}

absl::Status DoubleWellOptions::Validate() const {
  if (dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("double_well: dim must be >= 1, got ", dim));
  if (!std::isfinite(a) || !std::isfinite(b) || !std::isfinite(c) || !(c > 0))
    return absl::InvalidArgumentError(
        absl::StrCat("double_well: a, b, c must be finite and c > 0, got ", a,
                     ", ", b, ", ", c));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<DoubleWellEnergy>> DoubleWellEnergy::Create(
    const DoubleWellOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<DoubleWellEnergy>(new DoubleWellEnergy(options));
}

Tensor DoubleWellEnergy::Value(const Tensor& x) const {
  CheckInput("double_well", x);
  Tensor d = Column(x, 0), d2 = Square(d);
  Tensor u = o_.a * d + o_.b * d2 + o_.c * Square(d2);
  if (o_.dim == 1) return u;
  return u + 0.5 * Sum(Square(Narrow(x, 1, 1, o_.dim - 1)), 1);
}

absl::StatusOr<std::shared_ptr<GaussianEnergy>> GaussianEnergy::Create(
    std::vector<double> mu, std::vector<double> sigma) {
  if (mu.empty() || mu.size() != sigma.size())
    return absl::InvalidArgumentError(
        absl::StrCat("gaussian_energy: mu and sigma must be non-empty and of "
                     "one size, got ",
                     mu.size(), " and ", sigma.size()));
  for (size_t i = 0; i < mu.size(); ++i)
    if (!std::isfinite(mu[i]) || !std::isfinite(sigma[i]) || !(sigma[i] > 0))
      return absl::InvalidArgumentError(absl::StrCat(
          "gaussian_energy: entry ", i, ": mu = ", mu[i],
          ", sigma = ", sigma[i], " (finite, sigma > 0 required)"));
  return std::shared_ptr<GaussianEnergy>(
      new GaussianEnergy(std::move(mu), std::move(sigma)));
}

std::shared_ptr<GaussianEnergy> GaussianEnergy::Standard(int64_t dim) {
  FT_CHECK(dim >= 1, "gaussian_energy.standard: dim ", dim);
  return std::shared_ptr<GaussianEnergy>(new GaussianEnergy(
      std::vector<double>(dim, 0.0), std::vector<double>(dim, 1.0)));
}

Tensor GaussianEnergy::Value(const Tensor& x) const {
  CheckInput("gaussian_energy", x);
  const int64_t d = dim();
  std::vector<double> inv(d);
  for (int64_t i = 0; i < d; ++i) inv[i] = 1.0 / sigma_[i];
  Tensor mu = Tensor::FromVector({1, d}, mu_, x.dtype());
  Tensor s = Tensor::FromVector({1, d}, inv, x.dtype());
  return 0.5 * Sum(Square((x - mu) * s), 1);
}

double GaussianEnergy::LogNormalizer() const {
  double l = 0.5 * static_cast<double>(dim()) * std::log(2.0 * kPi);
  for (double s : sigma_) l += std::log(s);
  return l;
}

absl::StatusOr<std::shared_ptr<InterpolatedEnergy>> InterpolatedEnergy::Create(
    EnergyPtr u0, EnergyPtr u1, double lambda) {
  if (u0 == nullptr || u1 == nullptr)
    return absl::InvalidArgumentError("interpolated_energy: null energy");
  if (u0->dim() != u1->dim())
    return absl::InvalidArgumentError(
        absl::StrCat("interpolated_energy: dims differ: ", u0->name(), " ",
                     u0->dim(), ", ", u1->name(), " ", u1->dim()));
  if (!(lambda >= 0.0 && lambda <= 1.0))
    return absl::InvalidArgumentError(absl::StrCat(
        "interpolated_energy: lambda must be in [0, 1], got ", lambda));
  return std::shared_ptr<InterpolatedEnergy>(
      new InterpolatedEnergy(std::move(u0), std::move(u1), lambda));
}

std::string InterpolatedEnergy::name() const {
  return absl::StrCat("(1-", lambda_, ")", u0_->name(), "+", lambda_,
                      u1_->name());
}

Tensor InterpolatedEnergy::Value(const Tensor& x) const {
  CheckInput("interpolated_energy", x);
  if (lambda_ == 0.0) return u0_->Value(x);
  if (lambda_ == 1.0) return u1_->Value(x);
  return (1.0 - lambda_) * u0_->Value(x) + lambda_ * u1_->Value(x);
}

absl::StatusOr<std::shared_ptr<ConfinedEnergy>> ConfinedEnergy::Create(
    EnergyPtr inner, double half_width, double wall) {
  if (inner == nullptr)
    return absl::InvalidArgumentError("confined_energy: null energy");
  if (!(half_width > 0) || !(wall > 0) || !std::isfinite(half_width) ||
      !std::isfinite(wall))
    return absl::InvalidArgumentError(
        absl::StrCat("confined_energy: half_width and wall must be finite and "
                     "positive, got ",
                     half_width, " and ", wall));
  return std::shared_ptr<ConfinedEnergy>(
      new ConfinedEnergy(std::move(inner), half_width, wall));
}

Tensor ConfinedEnergy::Value(const Tensor& x) const {
  CheckInput("confined_energy", x);
  Tensor out = Relu(Abs(x) - half_width_);
  return inner_->Value(x) + (0.5 / (wall_ * wall_)) * Sum(Square(out), 1);
}

absl::StatusOr<double> LogNormalizer2D(const Energy& u, double lim, int grid) {
  if (u.dim() != 2 || !(lim > 0) || !std::isfinite(lim) || grid < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "log_normalizer_2d: needs a 2-D energy, lim > 0 and grid >= 1; got ",
        u.name(), " (dim ", u.dim(), "), lim ", lim, ", grid ", grid));
  NoGradScope no_grad;
  const double h = 2.0 * lim / grid;
  const int64_t n = int64_t{grid} * grid;
  Tensor z = Tensor::Empty(Shape{n, 2});
  double* d = z.mutable_data<double>();
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) {
      d[2 * (int64_t{i} * grid + j)] = -lim + (i + 0.5) * h;
      d[2 * (int64_t{i} * grid + j) + 1] = -lim + (j + 0.5) * h;
    }
  const std::vector<double> v = u.Value(z).ToVector();
  double m = -INFINITY;
  for (double e : v) m = std::max(m, -e);
  if (!std::isfinite(m))
    return absl::InvalidArgumentError(absl::StrCat(
        "log_normalizer_2d: ", u.name(), " has no finite value on the grid"));
  double s = 0.0;
  for (double e : v) s += std::exp(-e - m);
  return m + std::log(s) + 2.0 * std::log(h);
}

}  // namespace flowtape::flows
