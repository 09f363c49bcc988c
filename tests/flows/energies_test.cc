#include "flows/energies.h"

#include <cmath>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

// The double well in `dim` dimensions (default coefficients).
DoubleWellOptions DoubleWellIn(int64_t dim) {
  DoubleWellOptions options;
  options.dim = dim;
  return options;
}

constexpr double kPi = 3.14159265358979323846;

// U1-U4 written out in plain doubles from Rezende & Mohamed 2015, Table 1.
double Reference(int k, double z1, double z2) {
  auto g = [](double a) { return std::exp(-0.5 * a * a); };
  const double w1 = std::sin(2 * kPi * z1 / 4);
  const double w2 = 3 * std::exp(-0.5 * std::pow((z1 - 1) / 0.6, 2));
  const double w3 = 3 / (1 + std::exp(-(z1 - 1) / 0.3));
  switch (k) {
    case 1:
      return 0.5 * std::pow((std::hypot(z1, z2) - 2) / 0.4, 2) -
             std::log(g((z1 - 2) / 0.6) + g((z1 + 2) / 0.6));
    case 2:
      return 0.5 * std::pow((z2 - w1) / 0.4, 2);
    case 3:
      return -std::log(g((z2 - w1) / 0.35) + g((z2 - w1 + w2) / 0.35));
    default:
      return -std::log(g((z2 - w1) / 0.4) + g((z2 - w1 + w3) / 0.35));
  }
}

std::vector<EnergyPtr> AllEnergies() {
  std::vector<EnergyPtr> all;
  for (const char* n : {"u1", "u2", "u3", "u4"})
    all.push_back(*RezendeEnergy::Create(n));
  all.push_back(*DoubleWellEnergy::Create(DoubleWellIn(3)));
  all.push_back(*GaussianEnergy::Create({0.5, -1.0}, {0.7, 1.3}));
  all.push_back(
      *InterpolatedEnergy::Create(GaussianEnergy::Standard(2), all[0], 0.3));
  all.push_back(*ConfinedEnergy::Create(all[1], 1.0, 0.5));
  return all;
}

TEST(Energies, RezendeMatchesTheFormulas) {
  Rng rng(3);
  Tensor z = 2.0 * Tensor::Randn({50, 2}, rng);
  for (int k = 1; k <= 4; ++k) {
    auto u = *RezendeEnergy::Create("U" + std::to_string(k));
    EXPECT_EQ(u->name(), "u" + std::to_string(k));
    const std::vector<double> v = u->Value(z).ToVector();
    for (int i = 0; i < 50; ++i)
      EXPECT_NEAR(v[i], Reference(k, z[2 * i], z[2 * i + 1]), 1e-12)
          << "u" << k << " row " << i;
  }
}

TEST(Energies, DoubleWellAndGaussianMatchTheFormulas) {
  auto dw = *DoubleWellEnergy::Create(DoubleWellIn(3));
  auto gs = *GaussianEnergy::Create({0.5, -1.0}, {0.7, 1.3});
  Tensor x = Tensor::FromVector({1, 3}, {1.5, -0.5, 2.0});
  const double x1 = 1.5;
  EXPECT_NEAR(dw->Value(x).item(),
              -0.5 * x1 - 6 * x1 * x1 + std::pow(x1, 4) + 0.5 * (0.25 + 4),
              1e-12);
  Tensor y = Tensor::FromVector({1, 2}, {1.5, -0.5});
  EXPECT_NEAR(gs->Value(y).item(),
              0.5 * (std::pow(1.0 / 0.7, 2) + std::pow(0.5 / 1.3, 2)), 1e-12);
}

// Energy::Gradient against central differences of Value, per row.
TEST(Energies, GradientMatchesFiniteDifferences) {
  Rng rng(5);
  for (const EnergyPtr& u : AllEnergies()) {
    const int64_t d = u->dim();
    Tensor x = 1.5 * Tensor::Randn({20, d}, rng);
    const std::vector<double> g = u->Gradient(x).ToVector();
    const double h = 1e-6;
    double worst = 0;
    for (int64_t j = 0; j < d; ++j) {
      std::vector<double> p = x.ToVector(), m = p;
      for (int64_t i = 0; i < 20; ++i) p[i * d + j] += h, m[i * d + j] -= h;
      const std::vector<double> up =
          u->Value(Tensor::FromVector({20, d}, p)).ToVector();
      const std::vector<double> um =
          u->Value(Tensor::FromVector({20, d}, m)).ToVector();
      for (int64_t i = 0; i < 20; ++i) {
        const double fd = (up[i] - um[i]) / (2 * h);
        worst = std::max(
            worst, std::abs(g[i * d + j] - fd) / std::max(1.0, std::abs(fd)));
      }
    }
    EXPECT_LT(worst, 1e-6) << u->name();
    Tape::Get().Reset();
  }
}

// The recorded gradient is differentiable again (Langevin steps need it).
TEST(Energies, GradientIsDifferentiable) {
  Rng rng(6);
  for (const EnergyPtr& u : AllEnergies()) {
    Tensor x = 1.5 * Tensor::Randn({8, u->dim()}, rng);
    Tensor c = Tensor::Randn({8, u->dim()}, rng);
    auto f = [&](const std::vector<Tensor>& in) {
      return Sum(u->Gradient(in[0]) * c);
    };
    EXPECT_LT(testing::GradientError(f, {x}), 1e-5) << u->name();
    Tape::Get().Reset();
  }
}

TEST(Energies, GradientWithoutRecordingIsTheSameConstant) {
  Rng rng(7);
  auto u = *RezendeEnergy::Create("u3");
  Tensor x = Tensor::Randn({10, 2}, rng);
  const std::vector<double> on = u->Gradient(x).ToVector();
  NoGradScope off;
  Tensor g = u->Gradient(x);
  EXPECT_TRUE(g.is_constant());
  EXPECT_EQ(g.ToVector(), on);
}

TEST(Energies, QuadratureOfAGaussianIsItsClosedForm) {
  auto gs = *GaussianEnergy::Create({0.3, -0.2}, {0.7, 1.1});
  const double exact = std::log(2 * kPi) + std::log(0.7 * 1.1);
  EXPECT_NEAR(gs->LogNormalizer(), exact, 1e-14);
  EXPECT_NEAR(*LogNormalizer2D(*gs, 8.0, 400), exact, 1e-6);
  // The double well's mass lies inside [-6, 6]^2 (x2 is a unit Gaussian).
  auto dw = *DoubleWellEnergy::Create({});
  EXPECT_NEAR(*LogNormalizer2D(*dw, 6.0, 1200),
              *LogNormalizer2D(*dw, 8.0, 1600), 1e-7);
}

TEST(Energies, ConfinedEqualsInnerInsideTheBox) {
  auto u2 = *RezendeEnergy::Create("u2");
  auto c = *ConfinedEnergy::Create(u2, 4.0, 0.1);
  Tensor in = Tensor::FromVector({2, 2}, {3.9, -3.9, -1.0, 2.0});
  EXPECT_EQ(c->Value(in).ToVector(), u2->Value(in).ToVector());
  Tensor out = Tensor::FromVector({1, 2}, {4.5, 0.0});
  EXPECT_NEAR(c->Value(out).item() - u2->Value(out).item(), 0.5 * 0.25 / 0.01,
              1e-12);
  // exp(-U2) is improper; confined it has a finite normaliser that grows
  // only by the wall's thin layer beyond the box.
  const double box = *LogNormalizer2D(*u2, 4.0, 800);
  const double walled = *LogNormalizer2D(*c, 5.0, 1000);
  EXPECT_GT(walled, box);
  EXPECT_LT(walled - box, 0.05);
}

TEST(Energies, BadArgumentsAreErrors) {
  EXPECT_FALSE(RezendeEnergy::Create("u5").ok());
  DoubleWellOptions improper;  // c = 0: exp(-U) does not integrate
  improper.c = 0.0;
  EXPECT_FALSE(DoubleWellEnergy::Create(improper).ok());
  EXPECT_FALSE(DoubleWellEnergy::Create(DoubleWellIn(0)).ok());
  EXPECT_FALSE(GaussianEnergy::Create({0.0}, {0.0}).ok());
  EXPECT_FALSE(GaussianEnergy::Create({0.0, 1.0}, {1.0}).ok());
  EXPECT_FALSE(InterpolatedEnergy::Create(GaussianEnergy::Standard(3),
                                          *RezendeEnergy::Create("u1"), 0.5)
                   .ok());
  EXPECT_FALSE(InterpolatedEnergy::Create(GaussianEnergy::Standard(2),
                                          *RezendeEnergy::Create("u1"), 1.5)
                   .ok());
  EXPECT_FALSE(ConfinedEnergy::Create(nullptr).ok());
  EXPECT_FALSE(ConfinedEnergy::Create(GaussianEnergy::Standard(2), -1).ok());
  EXPECT_FALSE(LogNormalizer2D(*GaussianEnergy::Standard(3)).ok());
}

}  // namespace
}  // namespace flowtape::flows
