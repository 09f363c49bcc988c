// Distributions: densities integrate to 1 (quadrature), sample moments match
// the parameters, explicit parameters are validated, gradients match finite
// differences.
#include "flows/distribution.h"

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

// K components in D dimensions (means ~ N(0, init_spread^2)).
MixtureOptions Mixture(int64_t components, int64_t dims,
                       double init_spread = 1.0) {
  MixtureOptions options;
  options.components = components;
  options.dims = dims;
  options.init_spread = init_spread;
  return options;
}

// Midpoint rule of exp(log p) on [-l, l]^d, d in {1, 2}, m points per axis.
double Integral(const Distribution& p, double l, int m) {
  NoGradScope no_grad;
  const int d = static_cast<int>(p.event_numel());
  const double h = 2 * l / m;
  const int64_t n = d == 1 ? m : int64_t{m} * m;
  Tensor x = Tensor::Empty({n, d});
  double* px = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    px[i * d] = -l + h * (i % m + 0.5);
    if (d == 2) px[i * d + 1] = -l + h * (i / m + 0.5);
  }
  Tensor lp = p.LogProb(x);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(lp[i]);
  return s * std::pow(h, d);
}

struct Moments {
  std::vector<double> mean, var;
};
Moments SampleMoments(const Distribution& p, int64_t n, Rng& rng) {
  NoGradScope no_grad;
  Tensor s = p.Sample(n, rng);
  const int64_t d = p.event_numel();
  Moments m{std::vector<double>(d, 0.0), std::vector<double>(d, 0.0)};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) m.mean[j] += s[i * d + j] / n;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      m.var[j] += std::pow(s[i * d + j] - m.mean[j], 2) / (n - 1);
  return m;
}

TEST(Distribution, StandardNormalIntegratesAndMoments) {
  auto p1 = StandardNormal::Create({1}).value();
  auto p2 = StandardNormal::Create({2}).value();
  EXPECT_NEAR(Integral(*p1, 10, 4000), 1.0, 1e-10);
  EXPECT_NEAR(Integral(*p2, 10, 600), 1.0, 1e-8);
  // log N(0; 0, 1) in 2-D is -log(2 pi).
  EXPECT_NEAR(p2->LogProb(Tensor::Zeros({1, 2})).item(), -std::log(2 * M_PI),
              1e-14);
  Rng rng(1);
  Moments m = SampleMoments(*p2, 200000, rng);
  for (int j = 0; j < 2; ++j) {
    EXPECT_NEAR(m.mean[j], 0.0, 0.01);
    EXPECT_NEAR(m.var[j], 1.0, 0.015);
  }
}

TEST(Distribution, StandardNormalImageEvent) {
  auto p = StandardNormal::Create({2, 3, 3}).value();
  Rng rng(2);
  Tensor x = p->Sample(4, rng);
  ASSERT_EQ(x.shape(), Shape({4, 2, 3, 3}));
  Tensor lp = p->LogProb(x);
  ASSERT_EQ(lp.shape(), Shape({4}));
  double expect = -9 * std::log(2 * M_PI);
  for (int j = 0; j < 18; ++j) expect -= 0.5 * x[j] * x[j];
  EXPECT_NEAR(lp[0], expect, 1e-12);
}

TEST(Distribution, DiagonalNormal) {
  auto p = DiagonalNormal::Create(Tensor::FromVector({2}, {0.5, -1.0}),
                                  Tensor::FromVector({2}, {0.7, 1.6}));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(Integral(**p, 12, 800), 1.0, 1e-8);
  Rng rng(3);
  Moments m = SampleMoments(**p, 200000, rng);
  EXPECT_NEAR(m.mean[0], 0.5, 0.01);
  EXPECT_NEAR(m.mean[1], -1.0, 0.02);
  EXPECT_NEAR(m.var[0], 0.49, 0.01);
  EXPECT_NEAR(m.var[1], 2.56, 0.04);
  // Closed form at one point.
  Tensor x = Tensor::FromVector({1, 2}, {1.0, 0.0});
  double expect = 0;
  const double mu[2] = {0.5, -1.0}, s[2] = {0.7, 1.6};
  for (int j = 0; j < 2; ++j)
    expect += -0.5 * std::pow((x[j] - mu[j]) / s[j], 2) - std::log(s[j]) -
              0.5 * std::log(2 * M_PI);
  EXPECT_NEAR((*p)->LogProb(x).item(), expect, 1e-13);
}

TEST(Distribution, LogisticIntegratesAndMoments) {
  auto p1 = Logistic::Create({1}).value();
  EXPECT_NEAR(Integral(*p1, 40, 20000), 1.0, 1e-9);
  auto p = Logistic::Create(Tensor::FromVector({2}, {1.0, -2.0}),
                            Tensor::FromVector({2}, {0.5, 1.5}));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(Integral(**p, 40, 1500), 1.0, 1e-6);
  // Variance of a logistic is s^2 pi^2 / 3.
  Rng rng(4);
  Moments m = SampleMoments(**p, 200000, rng);
  EXPECT_NEAR(m.mean[0], 1.0, 0.01);
  EXPECT_NEAR(m.mean[1], -2.0, 0.03);
  EXPECT_NEAR(m.var[0], 0.25 * M_PI * M_PI / 3, 0.02);
  EXPECT_NEAR(m.var[1], 2.25 * M_PI * M_PI / 3, 0.15);
  // Standard logistic density at 0 is 1/4.
  EXPECT_NEAR(p1->LogProb(Tensor::Zeros({1, 1})).item(), std::log(0.25), 1e-14);
}

TEST(Distribution, GaussianMixture) {
  auto p = GaussianMixture::Create(
      Tensor::FromVector({3}, {1.0, 2.0, 1.0}),
      Tensor::FromVector({3, 2}, {-2, 0, 2, 1, 0, -2}),
      Tensor::FromVector({3, 2}, {0.5, 1.0, 0.8, 0.6, 1.2, 0.4}));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(Integral(**p, 12, 800), 1.0, 1e-8);
  // Mixture mean = sum_k pi_k mu_k with pi = (1, 2, 1)/4.
  Rng rng(5);
  Moments m = SampleMoments(**p, 200000, rng);
  EXPECT_NEAR(m.mean[0], 0.25 * (-2) + 0.5 * 2 + 0.25 * 0, 0.02);
  EXPECT_NEAR(m.mean[1], 0.25 * 0 + 0.5 * 1 + 0.25 * (-2), 0.02);
  // Second moment of coordinate 0: sum pi_k (s_k^2 + mu_k^2) - mean^2.
  double e2 = 0.25 * (0.25 + 4) + 0.5 * (0.64 + 4) + 0.25 * (1.44 + 0);
  EXPECT_NEAR(m.var[0], e2 - 0.25, 0.04);
  // One component: a mixture of one is its Gaussian.
  auto one = GaussianMixture::Create(Tensor::FromVector({1}, {3.0}),
                                     Tensor::FromVector({1, 2}, {0.5, -1.0}),
                                     Tensor::FromVector({1, 2}, {0.7, 1.6}));
  auto diag = DiagonalNormal::Create(Tensor::FromVector({2}, {0.5, -1.0}),
                                     Tensor::FromVector({2}, {0.7, 1.6}));
  Tensor x = Tensor::FromVector({2, 2}, {0.3, 0.1, -2.0, 4.0});
  Tensor a = (*one)->LogProb(x), b = (*diag)->LogProb(x);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(a[i], b[i], 1e-13);
}

TEST(Distribution, FactorizedMixture) {
  auto p = FactorizedMixture::Create(Mixture(3, 2)).value();
  Rng rng(8);
  for (Tensor q : p->Parameters()) {  // move off the symmetric start
    double* v = q.mutable_data<double>();
    for (int64_t j = 0; j < q.numel(); ++j) v[j] += 0.3 * rng.Normal();
  }
  EXPECT_NEAR(Integral(*p, 12, 800), 1.0, 1e-8);
  // Coordinates are independent: log p(x0, x1) = log p0(x0) + log p1(x1),
  // which the 2-D density must factor into (checked via sample moments of
  // the product: E[x0 x1] = E[x0] E[x1]).
  Moments m = SampleMoments(*p, 200000, rng);
  Tensor s;
  {
    NoGradScope ng;
    s = p->Sample(200000, rng);
  }
  double cross = 0;
  for (int64_t i = 0; i < 200000; ++i) cross += s[2 * i] * s[2 * i + 1] / 2e5;
  EXPECT_NEAR(cross, m.mean[0] * m.mean[1], 0.02);
  // Mean of coordinate 0 from the parameters: sum_k softmax(logits)_k mu_k.
  auto named = p->NamedParameters();
  Tensor logits = named[0].second, means = named[1].second;
  double z = 0, mean0 = 0;
  for (int c = 0; c < 3; ++c) z += std::exp(logits[c]);
  for (int c = 0; c < 3; ++c) mean0 += std::exp(logits[c]) / z * means[c];
  EXPECT_NEAR(m.mean[0], mean0, 0.01);
}

TEST(Distribution, ExplicitParametersAreValidated) {
  auto bad_scale = DiagonalNormal::Create(Tensor::FromVector({2}, {0, 0}),
                                          Tensor::FromVector({2}, {1, -1}));
  ASSERT_FALSE(bad_scale.ok());
  EXPECT_NE(bad_scale.status().message().find("scale[1]"), std::string::npos)
      << bad_scale.status();
  EXPECT_FALSE(Logistic::Create(Tensor::FromVector({1}, {NAN}),
                                Tensor::FromVector({1}, {1}))
                   .ok());
  EXPECT_FALSE(
      DiagonalNormal::Create(Tensor::Zeros({2}), Tensor::Ones({3})).ok());
  auto bad_w =
      GaussianMixture::Create(Tensor::FromVector({2}, {1, 0}),
                              Tensor::Zeros({2, 1}), Tensor::Ones({2, 1}));
  ASSERT_FALSE(bad_w.ok());
  EXPECT_NE(bad_w.status().message().find("weights[1]"), std::string::npos);
  EXPECT_FALSE(GaussianMixture::Create(Tensor::Ones({2}), Tensor::Zeros({3, 1}),
                                       Tensor::Ones({3, 1}))
                   .ok());
}

// Gradient of the mean log-density w.r.t. every parameter, by central
// differences on the parameters in place.
double ParamGradError(const Distribution& p, const Tensor& x) {
  TapeScope scope;
  for (Tensor q : p.Parameters()) q.ZeroGrad();
  Backward(Mean(p.LogProb(x)));
  double worst = 0;
  for (Tensor q : p.Parameters()) {
    Tensor g = q.grad().Detach();
    for (int64_t j = 0; j < q.numel(); ++j) {
      double* v = q.mutable_data<double>();
      const double old = v[j], h = 1e-6;
      v[j] = old + h;
      double fp, fm;
      {
        NoGradScope ng;
        fp = Mean(p.LogProb(x)).item();
        v[j] = old - h;
        fm = Mean(p.LogProb(x)).item();
      }
      v[j] = old;
      double n = (fp - fm) / (2 * h);
      worst =
          std::max(worst, std::fabs(g[j] - n) / std::max(1.0, std::fabs(n)));
    }
  }
  return worst;
}

// Bad event shapes and mixture options are a Status naming the problem.
TEST(Distribution, BadShapesAndOptionsAreAStatus) {
  Rng rng(1);
  auto expect = [](const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  expect(StandardNormal::Create(Shape{}).status(),
         "standard_normal: event shape []");
  expect(StandardNormal::Create(Shape{1, 2, 3, 4}).status(),
         "event shape [1, 2, 3, 4]");
  expect(DiagonalNormal::Create(Shape{0}).status(),
         "diagonal_normal: event shape [0]");
  expect(Logistic::Create(Shape{2, 0}).status(),
         "logistic: event shape [2, 0]");
  expect(GaussianMixture::Create(Mixture(0, 2), rng).status(),
         "components = 0");
  expect(FullGaussianMixture::Create(Mixture(2, 0), rng).status(), "dims = 0");
  expect(GaussianMixture::Create(Mixture(2, 2, NAN), rng).status(),
         "init_spread = nan");
  expect(FactorizedMixture::Create(Mixture(-1, 2)).status(), "components = -1");
  EXPECT_TRUE(FactorizedMixture::Create(Mixture(2, 2)).ok());
}

TEST(Distribution, ParameterGradients) {
  Rng rng(6);
  Tensor x = Tensor::Randn({5, 3}, rng);
  auto dn = DiagonalNormal::Create({3}).value();
  auto gm = GaussianMixture::Create(Mixture(4, 3), rng).value();
  auto fg = FullGaussianMixture::Create(Mixture(4, 3), rng).value();
  auto lg = Logistic::Create({3}, /*learnable=*/true).value();
  auto fm = FactorizedMixture::Create(Mixture(2, 3)).value();
  for (Distribution* d : std::vector<Distribution*>{
           dn.get(), gm.get(), fg.get(), lg.get(), fm.get()}) {
    for (Tensor q : d->Parameters()) {  // move off the symmetric start
      double* v = q.mutable_data<double>();
      for (int64_t j = 0; j < q.numel(); ++j) v[j] += 0.3 * rng.Normal();
    }
    EXPECT_LT(ParamGradError(*d, x), 1e-7) << d->name();
  }
  EXPECT_EQ(gm->NumParameters(), 4 + 12 + 12);
  EXPECT_EQ(fg->NumParameters(), 4 + 12 + 12 + 12);  // + 4 strict triangles
  EXPECT_EQ(Logistic::Create({3}).value()->NumParameters(), 0);
}

// The mixture's score and its derivative in x (the flow's output feeds it):
// first and second derivatives against finite differences, and the score
// in closed form, grad log p = sum_k r_k (mu_k - x) / s_k^2 with
// responsibilities r_k.
TEST(Distribution, GaussianMixtureDerivativesInX) {
  auto p = GaussianMixture::Create(
      Tensor::FromVector({3}, {1.0, 2.0, 1.0}),
      Tensor::FromVector({3, 2}, {-2, 0, 2, 1, 0, -2}),
      Tensor::FromVector({3, 2}, {0.5, 1.0, 0.8, 0.6, 1.2, 0.4}));
  ASSERT_TRUE(p.ok());
  Rng rng(9);
  const Tensor x = Tensor::Randn({4, 2}, rng) * 1.5;
  auto f = [&](const std::vector<Tensor>& in) {
    return Sum((*p)->LogProb(in[0]) * Tensor::FromVector({4}, {1, -1, 2, .5}));
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {x}), 1e-6);
  const double w[3] = {0.25, 0.5, 0.25}, mu[3][2] = {{-2, 0}, {2, 1}, {0, -2}},
               sd[3][2] = {{0.5, 1.0}, {0.8, 0.6}, {1.2, 0.4}};
  TapeScope scope;
  Tensor v = x.Detach();
  v.set_requires_grad(true);
  Tensor g = Grad({Sum((*p)->LogProb(v))}, {v})[0];
  for (int i = 0; i < 4; ++i) {
    double r[3], z = 0;
    for (int k = 0; k < 3; ++k) {
      r[k] = w[k];
      for (int j = 0; j < 2; ++j)
        r[k] *=
            std::exp(-0.5 * std::pow((x[2 * i + j] - mu[k][j]) / sd[k][j], 2)) /
            sd[k][j];
      z += r[k];
    }
    for (int j = 0; j < 2; ++j) {
      double want = 0;
      for (int k = 0; k < 3; ++k)
        want += r[k] / z * (mu[k][j] - x[2 * i + j]) / (sd[k][j] * sd[k][j]);
      EXPECT_NEAR(g[2 * i + j], want, 1e-12);
    }
  }
}

// Sampling picks component k with probability softmax(logits)_k: the
// fraction of samples nearest each of three far-apart means.
TEST(Distribution, GaussianMixtureSamplesItsWeights) {
  auto p = GaussianMixture::Create(Tensor::FromVector({3}, {1.0, 3.0, 6.0}),
                                   Tensor::FromVector({3, 1}, {-50, 0, 50}),
                                   Tensor::Ones({3, 1}));
  ASSERT_TRUE(p.ok());
  Rng rng(10);
  NoGradScope ng;
  Tensor s = (*p)->Sample(100000, rng);
  double count[3] = {0, 0, 0};
  for (int64_t i = 0; i < 100000; ++i)
    count[s[i] < -25 ? 0 : (s[i] > 25 ? 2 : 1)] += 1e-5;
  // Binomial standard deviations <= 0.0016.
  EXPECT_NEAR(count[0], 0.1, 0.006);
  EXPECT_NEAR(count[1], 0.3, 0.006);
  EXPECT_NEAR(count[2], 0.6, 0.006);
}

// ---- full covariances ----
// Three components in 3-D with correlated Cholesky factors (row-major
// [K, D, D], lower triangular).
const std::vector<double> kFullW = {1.0, 2.0, 1.5};
const std::vector<double> kFullMu = {-1, 0, 1, 2, 1, -1, 0, -2, 0.5};
const std::vector<double> kFullL = {0.8,  0,    0,    //
                                    0.6,  1.1,  0,    //
                                    -0.4, 0.3,  0.5,  //
                                    1.2,  0,    0,    //
                                    -0.9, 0.4,  0,    //
                                    0.2,  0.7,  0.9,  //
                                    0.5,  0,    0,    //
                                    0.3,  0.6,  0,    //
                                    0.0,  -0.5, 1.3};

std::shared_ptr<FullGaussianMixture> MakeFull(int d) {
  // The leading d x d blocks of the factors above (still lower triangular).
  std::vector<double> mu, l;
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < d; ++i) {
      mu.push_back(kFullMu[3 * k + i]);
      for (int j = 0; j < d; ++j) l.push_back(kFullL[9 * k + 3 * i + j]);
    }
  auto p = FullGaussianMixture::Create(Tensor::FromVector({3}, kFullW),
                                       Tensor::FromVector({3, d}, mu),
                                       Tensor::FromVector({3, d, d}, l));
  FT_CHECK(p.ok(), p.status().ToString());
  return *p;
}

// log sum_k w_k N(x; mu_k, S_k) with S_k = L_k L_k^T formed explicitly, its
// inverse and determinant by Gauss-Jordan elimination (no triangular solve).
double BruteForceLogProb(const double* x, int d) {
  double total = 0, wsum = 0;
  for (double w : kFullW) wsum += w;
  for (int k = 0; k < 3; ++k) {
    std::vector<double> s(d * d, 0.0), inv(d * d, 0.0);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j)
        for (int m = 0; m < d; ++m)
          s[i * d + j] += kFullL[9 * k + 3 * i + m] * kFullL[9 * k + 3 * j + m];
    for (int i = 0; i < d; ++i) inv[i * d + i] = 1;
    double det = 1;
    for (int c = 0; c < d; ++c) {
      int piv = c;
      for (int r = c + 1; r < d; ++r)
        if (std::fabs(s[r * d + c]) > std::fabs(s[piv * d + c])) piv = r;
      if (piv != c) {
        det = -det;
        for (int j = 0; j < d; ++j) {
          std::swap(s[c * d + j], s[piv * d + j]);
          std::swap(inv[c * d + j], inv[piv * d + j]);
        }
      }
      const double p = s[c * d + c];
      det *= p;
      for (int j = 0; j < d; ++j) s[c * d + j] /= p, inv[c * d + j] /= p;
      for (int r = 0; r < d; ++r) {
        if (r == c) continue;
        const double f = s[r * d + c];
        for (int j = 0; j < d; ++j)
          s[r * d + j] -= f * s[c * d + j],
              inv[r * d + j] -= f * inv[c * d + j];
      }
    }
    double q = 0;
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j)
        q += (x[i] - kFullMu[3 * k + i]) * inv[i * d + j] *
             (x[j] - kFullMu[3 * k + j]);
    total += kFullW[k] / wsum * std::exp(-0.5 * q) /
             std::sqrt(std::pow(2 * M_PI, d) * det);
  }
  return std::log(total);
}

TEST(Distribution, FullGaussianMixtureMatchesBruteForce) {
  Rng rng(11);
  for (int d : {1, 2, 3}) {
    SCOPED_TRACE(d);
    auto p = MakeFull(d);
    Tensor x = Tensor::Randn({20, d}, rng) * 2.0;
    Tensor lp = p->LogProb(x);
    for (int i = 0; i < 20; ++i)
      EXPECT_NEAR(lp[i], BruteForceLogProb(x.data<double>() + i * d, d), 1e-12);
  }
}

TEST(Distribution, FullGaussianMixtureIntegratesToOne) {
  // Midpoint rule on [-12, 12]^2 (the widest component has sd < 2).
  EXPECT_NEAR(Integral(*MakeFull(2), 12, 800), 1.0, 1e-8);
  EXPECT_NEAR(Integral(*MakeFull(1), 12, 4000), 1.0, 1e-10);
}

// With zero strict lower triangles it is the diagonal mixture.
TEST(Distribution, FullGaussianMixtureWithDiagonalFactorsIsDiagonal) {
  const Tensor w = Tensor::FromVector({2}, {1.0, 3.0});
  const Tensor mu = Tensor::FromVector({2, 2}, {1, -1, 0, 2});
  auto diag = GaussianMixture::Create(
      w, mu, Tensor::FromVector({2, 2}, {0.5, 2.0, 1.5, 0.7}));
  auto full = FullGaussianMixture::Create(
      w, mu, Tensor::FromVector({2, 2, 2}, {0.5, 0, 0, 2.0, 1.5, 0, 0, 0.7}));
  ASSERT_TRUE(diag.ok() && full.ok());
  Rng rng(12);
  Tensor x = Tensor::Randn({10, 2}, rng);
  Tensor a = (*diag)->LogProb(x), b = (*full)->LogProb(x);
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(a[i], b[i], 1e-13);
}

// Derivatives in x and in every parameter (the strict triangles included)
// against central differences, first and second order, in float64.
TEST(Distribution, FullGaussianMixtureDerivatives) {
  auto p = MakeFull(3);
  Rng rng(13);
  const Tensor x = Tensor::Randn({4, 3}, rng) * 1.5;
  auto f = [&](const std::vector<Tensor>& in) {
    return Sum(p->LogProb(in[0]) * Tensor::FromVector({4}, {1, -1, 2, .5}));
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {x}), 1e-6);
  EXPECT_LT(ParamGradError(*p, x), 1e-7);
}

// Sample mean and covariance against sum_k w_k mu_k and
// sum_k w_k (L_k L_k^T + mu_k mu_k^T) - mean mean^T (cross terms included).
TEST(Distribution, FullGaussianMixtureSampleMoments) {
  auto p = MakeFull(2);
  Rng rng(14);
  NoGradScope ng;
  const int64_t n = 400000;
  Tensor s = p->Sample(n, rng);
  double wsum = 0;
  for (double w : kFullW) wsum += w;
  double mean[2] = {0, 0}, second[2][2] = {{0, 0}, {0, 0}};
  for (int k = 0; k < 3; ++k) {
    const double w = kFullW[k] / wsum;
    for (int i = 0; i < 2; ++i) {
      mean[i] += w * kFullMu[3 * k + i];
      for (int j = 0; j < 2; ++j) {
        double c = kFullMu[3 * k + i] * kFullMu[3 * k + j];
        for (int m = 0; m < 2; ++m)
          c += kFullL[9 * k + 3 * i + m] * kFullL[9 * k + 3 * j + m];
        second[i][j] += w * c;
      }
    }
  }
  double sm[2] = {0, 0}, sc[2][2] = {{0, 0}, {0, 0}};
  for (int64_t r = 0; r < n; ++r)
    for (int i = 0; i < 2; ++i) sm[i] += s[2 * r + i] / n;
  for (int64_t r = 0; r < n; ++r)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j)
        sc[i][j] += (s[2 * r + i] - sm[i]) * (s[2 * r + j] - sm[j]) / (n - 1);
  // Standard errors: about sd / sqrt(n) <= 0.003 for the means, <= 0.01 for
  // the covariances (sd < 2.2 per coordinate).
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(sm[i], mean[i], 0.012);
    for (int j = 0; j < 2; ++j)
      EXPECT_NEAR(sc[i][j], second[i][j] - mean[i] * mean[j], 0.04);
  }
  EXPECT_GT(std::fabs(second[0][1] - mean[0] * mean[1]), 0.3);  // correlated
}

TEST(Distribution, FullGaussianMixtureChecksItsFactors) {
  const Tensor w = Tensor::Ones({1}), mu = Tensor::Zeros({1, 2});
  auto upper = FullGaussianMixture::Create(
      w, mu, Tensor::FromVector({1, 2, 2}, {1, 0.5, 0, 1}));
  ASSERT_FALSE(upper.ok());
  EXPECT_NE(upper.status().message().find("above the diagonal"),
            std::string::npos);
  auto diag = FullGaussianMixture::Create(
      w, mu, Tensor::FromVector({1, 2, 2}, {1, 0, 0.3, -1}));
  ASSERT_FALSE(diag.ok());
  EXPECT_NE(diag.status().message().find("scale_tril[0, 1, 1]"),
            std::string::npos);
  EXPECT_FALSE(
      FullGaussianMixture::Create(w, mu, Tensor::Ones({1, 2, 3})).ok());
}

// MixtureWeights is exp(a - max a); a -inf logit is a weight of 0, and
// logits that define no distribution (NaN, +inf, all -inf) give no weights.
TEST(Distribution, MixtureWeights) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor a = Tensor::FromVector({5}, {7.0, 0.0, std::log(2.0), -inf, 1.0});
  EXPECT_EQ(MixtureWeights(a, 1, 3), (std::vector<double>{0.5, 1.0, 0.0}));
  const std::vector<std::vector<double>> bad = {
      {0.0, std::nan(""), 1.0}, {0.0, inf, 1.0}, {-inf, -inf, -inf}};
  for (const auto& v : bad)
    EXPECT_TRUE(MixtureWeights(Tensor::FromVector({3}, v), 0, 3).empty());
}

// A mixture whose logits overflowed in training (an entry +inf or NaN, or
// all -inf) has NaN log-densities; its samples are rows of NaN, which the
// training loop's model check reports, rather than an abort in the draw of
// the components. A single -inf logit is a component of weight 0.
TEST(Distribution, MixturesWithUndefinedWeightsSampleNaN) {
  const double inf = std::numeric_limits<double>::infinity();
  auto diag = GaussianMixture::Create(Tensor::FromVector({3}, {1, 3, 6}),
                                      Tensor::FromVector({3, 1}, {-50, 0, 50}),
                                      Tensor::Ones({3, 1}));
  ASSERT_TRUE(diag.ok());
  std::vector<std::shared_ptr<Distribution>> mixtures = {
      *diag, MakeFull(2), FactorizedMixture::Create(Mixture(3, 2)).value()};
  NoGradScope ng;
  for (const auto& p : mixtures) {
    Tensor logits;
    for (const auto& [name, t] : p->NamedParameters())
      if (name == "logits") logits = t;
    ASSERT_TRUE(logits.defined()) << p->name();
    const std::vector<double> saved = logits.ToVector();
    for (int c = 0; c < 3; ++c) {
      for (int64_t j = 0; j < logits.numel(); ++j)
        logits.mutable_data<double>()[j] =
            c == 0   ? (j == 1 ? inf : saved[j])
            : c == 1 ? (j == 0 ? std::nan("") : saved[j])
                     : -inf;
      Rng rng(4);
      Tensor s = p->Sample(6, rng);
      ASSERT_EQ(s.dim(0), 6) << p->name();
      ASSERT_EQ(s.dim(1), p->event_numel()) << p->name();
      for (int64_t i = 0; i < s.numel(); ++i)
        EXPECT_TRUE(std::isnan(s[i])) << p->name() << " case " << c;
      Tensor lp = p->LogProb(Tensor::Zeros({2, p->event_numel()}));
      for (int64_t i = 0; i < lp.numel(); ++i)
        EXPECT_FALSE(std::isfinite(lp[i])) << p->name() << " case " << c;
    }
    std::copy(saved.begin(), saved.end(), logits.mutable_data<double>());
  }
  // Weight 0 for the component at +50: no draw lands there.
  Tensor logits = (*diag)->NamedParameters()[0].second;
  logits.mutable_data<double>()[2] = -inf;
  Rng rng(5);
  Tensor s = (*diag)->Sample(20000, rng);
  double right = 0;
  for (int64_t i = 0; i < 20000; ++i) {
    ASSERT_TRUE(std::isfinite(s[i]));
    right += s[i] > 25;
  }
  EXPECT_EQ(right, 0);
}

TEST(Distribution, ReparametrisedSampleGradient) {
  // d/d mu of mean(sample) is 1 per coordinate (x = mu + s eps).
  auto p = DiagonalNormal::Create({2}).value();
  Rng rng(7);
  TapeScope scope;
  Tensor s = p->Sample(10, rng);
  std::vector<Tensor> g = Grad({Mean(s)}, {p->loc()});
  EXPECT_NEAR(g[0][0], 0.5, 1e-14);
  EXPECT_NEAR(g[0][1], 0.5, 1e-14);
}

TEST(Distribution, EveryFamilySamplesAndScoresInItsDtype) {
  Rng rng(7);
  std::vector<std::shared_ptr<Distribution>> all = {
      StandardNormal::Create(Shape{3}).value(),
      DiagonalNormal::Create(Shape{3}).value(),
      Logistic::Create(Shape{3}).value(),
      Logistic::Create(Shape{3}, /*learnable=*/true).value(),
      GaussianMixture::Create(Mixture(2, 3), rng).value(),
      FullGaussianMixture::Create(Mixture(2, 3), rng).value(),
      FactorizedMixture::Create(Mixture(2, 3)).value()};
  for (const auto& d : all) {
    SCOPED_TRACE(d->name());
    Tensor x = d->Sample(4, rng);
    const std::vector<double> want = d->LogProb(x).ToVector();
    d->To(kFloat32);
    EXPECT_EQ(d->dtype(), kFloat32);
    NoGradScope ng;
    Tensor s = d->Sample(4, rng);
    EXPECT_EQ(s.dtype(), kFloat32);
    Tensor lp = d->LogProb(Cast(x, kFloat32));
    ASSERT_EQ(lp.dtype(), kFloat32);
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(lp[i], want[i], 1e-5 * (1 + std::fabs(want[i])));
  }
}

}  // namespace
}  // namespace flowtape::flows
