// The resampled base (resampled.h): its density integrates to the value
// the Monte Carlo normaliser implies (1 up to the estimate's error), its
// sampler draws from the truncated density with the exact Z, gradients
// w.r.t. x and every parameter match finite differences, and a fresh (or
// T = 1) distribution is the standard normal.
#include "flows/resampled.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

std::shared_ptr<ResampledNormal> Make(int64_t dim, int64_t t, Rng& rng,
                                      double perturb, int64_t samples = 20000) {
  ResampledOptions o;
  o.dim = dim;
  o.hidden = {6};
  o.truncation = t;
  o.normaliser_samples = samples;
  auto p = ResampledNormal::Create(o, rng).value();
  for (Tensor w : p->Parameters())
    for (int64_t i = 0; i < w.numel(); ++i)
      w.mutable_data<double>()[i] += perturb * rng.Normal();
  return p;
}

double LogNormal(const Tensor& x, int64_t i, int64_t d) {
  double s = 0;
  for (int64_t c = 0; c < d; ++c) s += x[i * d + c] * x[i * d + c];
  return -0.5 * s - 0.5 * d * std::log(2 * M_PI);
}

// Midpoint grid on [-l, l]^d (d = 1, 2): points and cell volume.
Tensor Grid(int64_t d, double l, int m, double* volume) {
  const double h = 2 * l / m;
  const int64_t n = d == 1 ? m : int64_t{m} * m;
  std::vector<double> g(n * d);
  for (int64_t i = 0; i < n; ++i) {
    g[i * d] = -l + h * (i % m + 0.5);
    if (d == 2) g[i * d + 1] = -l + h * (i / m + 0.5);
  }
  *volume = std::pow(h, d);
  return Tensor::FromVector({n, d}, g);
}

TEST(Resampled, FreshAndUntruncatedAreTheStandardNormal) {
  Rng rng(1);
  auto fresh = Make(3, 50, rng, 0.0);
  auto t1 = Make(3, 1, rng, 1.0);
  Tensor x = Tensor::Randn({5, 3}, rng) * 2.0;
  NoGradScope no_grad;
  Tensor a = fresh->LogProb(x), b = t1->LogProb(x);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(a[i], LogNormal(x, i, 3), 1e-13);
    EXPECT_NEAR(b[i], LogNormal(x, i, 3), 1e-13);
  }
}

// The density integrates to (1 - alpha^) Z / Z^ + alpha^ (Z by quadrature),
// and Z^ is within 4 standard errors of Z.
TEST(Resampled, DensityIntegratesToTheNormaliserRatio) {
  for (int64_t d : {1, 2}) {
    Rng rng(2 + d);
    const int64_t t = 5;
    auto p = Make(d, t, rng, 1.5);
    NoGradScope no_grad;
    double vol;
    Tensor x = Grid(d, 8.0, d == 1 ? 8000 : 500, &vol);
    Tensor lp = p->LogProb(x), a = p->Acceptance(x);
    double integral = 0, z = 0;
    for (int64_t i = 0; i < x.dim(0); ++i) {
      integral += std::exp(lp[i]) * vol;
      z += a[i] * std::exp(LogNormal(x, i, d)) * vol;
    }
    const double zh = p->Normaliser().item();
    const double alpha = std::pow(1 - zh, t - 1);
    EXPECT_NEAR(integral, (1 - alpha) * z / zh + alpha, 1e-7) << d;
    Tensor as = p->Acceptance(Tensor::Randn({20000, d}, rng));
    double var = 0;
    for (int64_t i = 0; i < 20000; ++i) var += (as[i] - z) * (as[i] - z);
    const double se = std::sqrt(var / 20000 / 20000);
    EXPECT_NEAR(zh, z, 4 * se) << d;
    EXPECT_GT(std::fabs(alpha), 1e-3) << "truncation matters here";
    EXPECT_NEAR(integral, 1, 0.02) << d;
  }
}

// Truncated rejection sampling draws from p with the exact Z: empirical
// CDFs against quadrature of that density.
TEST(Resampled, SamplesFollowTheTruncatedDensity) {
  Rng rng(6);
  const int64_t t = 3;
  auto p = Make(1, t, rng, 1.5);
  NoGradScope no_grad;
  double vol;
  Tensor x = Grid(1, 9.0, 9000, &vol);
  Tensor a = p->Acceptance(x);
  double z = 0;
  for (int64_t i = 0; i < 9000; ++i)
    z += a[i] * std::exp(LogNormal(x, i, 1)) * vol;
  const double alpha = std::pow(1 - z, t - 1);
  const int64_t n = 100000;
  Tensor s = p->Sample(n, rng);
  ASSERT_EQ(s.shape(), Shape({n, 1}));
  for (double cut : {-1.0, 0.0, 0.7}) {
    double want = 0;
    for (int64_t i = 0; i < 9000 && x[i] < cut; ++i)
      want +=
          ((1 - alpha) * a[i] / z + alpha) * std::exp(LogNormal(x, i, 1)) * vol;
    double got = 0;
    for (int64_t i = 0; i < n; ++i) got += s[i] < cut;
    got /= n;
    EXPECT_NEAR(got, want, 4 * std::sqrt(want * (1 - want) / n) + 1e-3) << cut;
  }
}

TEST(Resampled, GradientsMatchFiniteDifferences) {
  Rng rng(7);
  auto p = Make(2, 4, rng, 1.0, 64);
  Tensor x = Tensor::Randn({3, 2}, rng);
  Tensor r = Tensor::Randn({3}, rng);
  auto loss = [&](const std::vector<Tensor>& in) {
    return Sum(p->LogProb(in[0]) * r);
  };
  EXPECT_LT(testing::GradientError(loss, {x}), 1e-6);
  EXPECT_LT(testing::HessianVectorError(loss, {x}), 1e-5);
  // Every parameter, in place.
  std::vector<Tensor> params = p->Parameters();
  std::vector<Tensor> grads = Grad({loss({x})}, params);
  const double h = 1e-6;
  double worst = 0;
  for (size_t k = 0; k < params.size(); ++k)
    for (int64_t i = 0; i < params[k].numel(); ++i) {
      double* w = params[k].mutable_data<double>() + i;
      const double keep = *w;
      *w = keep + h;
      const double up = loss({x}).item();
      *w = keep - h;
      const double down = loss({x}).item();
      *w = keep;
      const double fd = (up - down) / (2 * h);
      worst = std::max(
          worst, std::fabs(grads[k][i] - fd) / std::max(1.0, std::fabs(fd)));
    }
  EXPECT_LT(worst, 1e-6);
}

TEST(Resampled, Float32AgreesAndRedrawMovesTheEstimate) {
  Rng rng(8);
  auto p = Make(2, 10, rng, 1.0, 256);
  Tensor x = Tensor::Randn({4, 2}, rng);
  NoGradScope no_grad;
  Tensor lp64 = p->LogProb(x);
  const double z0 = p->Normaliser().item();
  p->To(kFloat32);
  Tensor lp32 = p->LogProb(Cast(x, kFloat32));
  ASSERT_EQ(lp32.dtype(), kFloat32);
  for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(lp32[i], lp64[i], 1e-5);
  EXPECT_EQ(p->Sample(3, rng).dtype(), kFloat32);
  const double z32 = p->Normaliser().item();
  EXPECT_NEAR(z32, z0, 1e-6);
  p->Redraw(rng);  // another estimate of the same Z (S = 256)
  EXPECT_GT(std::fabs(p->Normaliser().item() - z32), 1e-4);
  EXPECT_NEAR(p->Normaliser().item(), z0, 0.1);
}

TEST(Resampled, OptionsAreValidated) {
  Rng rng(9);
  ResampledOptions o;
  o.truncation = 0;
  absl::Status s = ResampledNormal::Create(o, rng).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("truncation 0"), std::string::npos) << s;
  o = ResampledOptions();
  o.hidden = {};
  EXPECT_FALSE(ResampledNormal::Create(o, rng).ok());
  o = ResampledOptions();
  o.normaliser_samples = 0;
  EXPECT_FALSE(ResampledNormal::Create(o, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows
