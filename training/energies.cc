#include "training/energies.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"

namespace flowtape::training {
namespace {

constexpr double kPi = 3.14159265358979323846;

// -log(exp(-a^2/2) + exp(-b^2/2)), stably, for [N] tensors a and b.
Tensor NegLogSumGauss(const Tensor& a, const Tensor& b) {
  Tensor e = Concat(
      {Reshape(-0.5 * Square(a), {-1, 1}), Reshape(-0.5 * Square(b), {-1, 1})},
      1);
  return -LogSumExp(e, 1);
}

}  // namespace

absl::StatusOr<Energy> ParseEnergy(const std::string& name) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "u1") return Energy::kU1;
  if (n == "u2") return Energy::kU2;
  if (n == "u3") return Energy::kU3;
  if (n == "u4") return Energy::kU4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown energy '", name, "'; expected u1, u2, u3 or u4"));
}

std::string EnergyName(Energy e) {
  return absl::StrCat("u", static_cast<int>(e) + 1);
}

Tensor PotentialEnergy(Energy e, const Tensor& z) {
  Tensor z1 = Reshape(Narrow(z, 1, 0, 1), {-1});
  Tensor z2 = Reshape(Narrow(z, 1, 1, 1), {-1});
  Tensor w1 = Sin((2.0 * kPi / 4.0) * z1);
  switch (e) {
    case Energy::kU1: {
      Tensor r = Sqrt(Square(z1) + Square(z2));
      return 0.5 * Square((r - 2.0) / 0.4) +
             NegLogSumGauss((z1 - 2.0) / 0.6, (z1 + 2.0) / 0.6);
    }
    case Energy::kU2:
      return 0.5 * Square((z2 - w1) / 0.4);
    case Energy::kU3: {
      Tensor w2 = 3.0 * Exp(-0.5 * Square((z1 - 1.0) / 0.6));
      return NegLogSumGauss((z2 - w1) / 0.35, (z2 - w1 + w2) / 0.35);
    }
    case Energy::kU4: {
      Tensor w3 = 3.0 * Sigmoid((z1 - 1.0) / 0.3);
      return NegLogSumGauss((z2 - w1) / 0.4, (z2 - w1 + w3) / 0.35);
    }
  }
  return Tensor();
}

double LogNormalizer(Energy e, double lim, int grid) {
  const double h = 2.0 * lim / grid;
  Tensor z = Tensor::Empty(Shape{int64_t{grid} * grid, 2});
  double* d = z.mutable_data();
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) {
      d[2 * (i * grid + j)] = -lim + (i + 0.5) * h;
      d[2 * (i * grid + j) + 1] = -lim + (j + 0.5) * h;
    }
  Tensor u = PotentialEnergy(e, z);
  // log sum exp(-u) h^2, stably.
  double m = -u[0];
  for (int64_t k = 0; k < u.numel(); ++k) m = std::max(m, -u[k]);
  double s = 0.0;
  for (int64_t k = 0; k < u.numel(); ++k) s += std::exp(-u[k] - m);
  return m + std::log(s) + 2.0 * std::log(h);
}

}  // namespace flowtape::training
