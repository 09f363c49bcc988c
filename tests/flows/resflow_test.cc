// Invertible residual blocks (i-ResNet / Residual Flows): the harness with
// exact log-dets, the Lipschitz bound, the series identity behind the
// estimators, unbiasedness of the Hutchinson / Russian-roulette estimators
// (statistical, 4 standard errors, with negative controls that must fall
// outside), the inverse's error reporting (bad input, divergence), the
// spectral-norm gradient against SVD vectors, and exact log-probs after a
// checkpoint round trip (spectral-norm vectors are buffers).
#include "flows/resflow.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/actnorm.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/permute.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tests/flows/harness.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {
using testing::FlowCase;
using Mat =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

ResidualOptions Exact(int64_t d, double c = 0.9) {
  ResidualOptions o;
  o.dim = d;
  o.hidden = {8, 8};
  o.activation = nn::Activation::kTanh;
  o.lipschitz = c;
  o.spectral = SpectralMode::kConverged;
  o.estimator = LogdetEstimator::kExact;
  return o;
}

// A block with raw weights scaled by 4: sigma(W) > c, so the spectral
// normalisation is active and g (hence log det) is far from zero.
std::shared_ptr<ResidualBlock> Block(const ResidualOptions& o, Rng& r) {
  return ResidualBlock::Create(o, r).value();
}

std::shared_ptr<ResidualBlock> Strong(const ResidualOptions& o, Rng& r) {
  auto f = Block(o, r);
  for (const auto& layer : f->layers()) {
    Tensor w = layer->weight(), b = layer->bias();
    for (int64_t i = 0; i < w.numel(); ++i) w.mutable_data<double>()[i] *= 4;
    for (int64_t i = 0; i < b.numel(); ++i)
      b.mutable_data<double>()[i] = 0.3 * r.Normal();
  }
  return f;
}

std::shared_ptr<Flow> Res1(Rng& r) { return Strong(Exact(1), r); }
std::shared_ptr<Flow> Res2(Rng& r) { return Strong(Exact(2), r); }
std::shared_ptr<Flow> Res3(Rng& r) { return Strong(Exact(3), r); }
std::shared_ptr<Flow> Res2Elu(Rng& r) {
  ResidualOptions o = Exact(2);
  o.activation = nn::Activation::kElu;
  o.hidden = {6};
  return Strong(o, r);
}
// The power series with exact traces and Lip(g) <= 0.25: 30 terms are exact
// to ~1e-19, so the harness checks the VJP-chain estimator's derivatives.
std::shared_ptr<Flow> Res2Series(Rng& r) {
  ResidualOptions o = Exact(2, 0.5);
  o.hidden = {8};
  o.estimator = LogdetEstimator::kPowerSeries;
  o.exact_trace = true;
  o.series_terms = 30;
  return Strong(o, r);
}
std::shared_ptr<Flow> ResStack(Rng& r) {  // actnorm, block, permutation, ...
  auto s = std::make_shared<Sequential>();
  for (int k = 0; k < 2; ++k) {
    s->Add(ActNorm::Create(3).value());
    s->Add(Strong(Exact(3), r));
    s->Add(RandomPermutation(3, r).value());
  }
  return s;
}
std::shared_ptr<Flow> ResFlow2(Rng& r) {
  return ResidualFlow(Exact(2), 2, r).value();
}

FLOWTAPE_FLOW_CASES(
    Residual, FlowCase("resflow_1d", Res1, {1}).Perturb(0.3),
    FlowCase("resflow_2d", Res2, {2}).Perturb(0.3),
    FlowCase("resflow_3d", Res3, {3}).Perturb(0.3),
    FlowCase("resflow_2d_elu", Res2Elu, {2}).Perturb(0.3),
    FlowCase("resflow_2d_series", Res2Series, {2}).Quadrature(8, 200),
    FlowCase("resflow_actnorm_permute_stack", ResStack, {3}).Perturb(0.2),
    FlowCase("residual_flow_2d", ResFlow2, {2}).Perturb(0.2));

// Per-sample Jacobians of g as Eigen matrices.
std::vector<Mat> Jacobians(const ResidualBlock& f, const Tensor& x) {
  TapeScope scope;
  Tensor j = BatchJacobian([&](const Tensor& y) { return f.Residual(y); }, x);
  const int64_t n = x.dim(0), d = x.dim(1);
  std::vector<Mat> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(Eigen::Map<const Mat>(j.data<double>() + i * d * d, d, d));
  return out;
}

// sum_{k=1..terms} (-1)^(k+1)/k tr(J^k) per sample, from the full Jacobian.
std::vector<double> SeriesByMatrixPowers(const std::vector<Mat>& js,
                                         int terms) {
  std::vector<double> out;
  for (const Mat& j : js) {
    Mat p = Mat::Identity(j.rows(), j.cols());
    double s = 0;
    for (int k = 1; k <= terms; ++k) {
      p = p * j;
      s += (k % 2 ? 1.0 : -1.0) / k * p.trace();
    }
    out.push_back(s);
  }
  return out;
}

TEST(ResidualBlock, LipschitzBoundHoldsNumerically) {
  for (nn::Activation act : {nn::Activation::kElu, nn::Activation::kTanh}) {
    Rng rng(3);
    ResidualOptions o = Exact(3, 0.7);
    o.hidden = {16, 16};
    o.activation = act;
    auto keep = Block(o, rng);
    ResidualBlock& f = *keep;
    // Large raw weights: sigma(W) >> c, so normalisation must act.
    for (const auto& layer : f.layers()) {
      Tensor w = layer->weight();
      for (int64_t i = 0; i < w.numel(); ++i) w.mutable_data<double>()[i] *= 5;
      Tensor wsn = layer->NormalizedWeight(SpectralMode::kConverged, 0);
      Eigen::JacobiSVD<Mat> svd_w(
          Eigen::Map<const Mat>(w.data<double>(), w.dim(0), w.dim(1)));
      Eigen::JacobiSVD<Mat> svd_sn(
          Eigen::Map<const Mat>(wsn.data<double>(), w.dim(0), w.dim(1)));
      EXPECT_NEAR(layer->ConvergedSigma(), svd_w.singularValues()(0),
                  1e-10 * svd_w.singularValues()(0));
      EXPECT_GT(svd_w.singularValues()(0), 1.0);
      EXPECT_NEAR(svd_sn.singularValues()(0), 0.7, 1e-12);
    }
    NoGradScope no_grad;
    Tensor x = Tensor::Randn({300, 3}, rng) * 2.0;
    double worst = 0;
    for (const Mat& j : Jacobians(f, x))
      worst = std::max(worst, Eigen::JacobiSVD<Mat>(j).singularValues()(0));
    // K = 3 layers with sigma(W_sn) = 0.7 and 1-Lipschitz activations.
    EXPECT_LE(worst, std::pow(0.7, 3) + 1e-12);
    EXPECT_GT(worst, 0.05);  // g is not trivially small
  }
}

TEST(ResidualBlock, PowerSeriesWithExactTracesMatchesExactLogdet) {
  Rng rng(5);
  ResidualOptions o = Exact(3, 0.5);
  o.hidden = {8};  // Lip(g) <= 0.25: 30 terms leave < 1e-19
  o.estimator = LogdetEstimator::kPowerSeries;
  o.exact_trace = true;
  o.series_terms = 30;
  auto keep = Strong(o, rng);
  ResidualBlock& f = *keep;
  Tensor x = Tensor::Randn({5, 3}, rng);
  Tensor exact = f.Logdet(x, LogdetEstimator::kExact);
  Tensor series = f.Forward(x).logdet;
  std::vector<double> by_powers = SeriesByMatrixPowers(Jacobians(f, x), 30);
  for (int i = 0; i < 5; ++i) {
    EXPECT_GT(std::fabs(exact[i]), 0.01);
    EXPECT_NEAR(series[i], exact[i], 1e-8) << i;
    EXPECT_NEAR(series[i], by_powers[i], 1e-12) << i;  // the VJP chain
  }
}

// Mean and standard error of `draws` calls of est() per sample.
struct Stats {
  std::vector<double> mean, se;
};
template <typename F>
Stats Sampled(F est, int n, int draws) {
  std::vector<double> s(n, 0), s2(n, 0);
  for (int k = 0; k < draws; ++k) {
    Tensor e = est();
    for (int i = 0; i < n; ++i) {
      s[i] += e[i];
      s2[i] += e[i] * e[i];
    }
  }
  Stats st;
  for (int i = 0; i < n; ++i) {
    const double m = s[i] / draws;
    st.mean.push_back(m);
    st.se.push_back(std::sqrt((s2[i] / draws - m * m) / (draws - 1)));
  }
  return st;
}

// Each of `points` rows of x repeated `reps` times (rows p*reps .. p*reps +
// reps - 1): the probe noise is drawn per row, so one call gives `reps`
// independent probes per point.
Tensor Repeat(const Tensor& x, int reps) {
  std::vector<Tensor> rows;
  for (int64_t p = 0; p < x.dim(0); ++p)
    for (int r = 0; r < reps; ++r) rows.push_back(Narrow(x, 0, p, 1));
  return Concat(rows, 0);
}
// Mean over each block of `reps` rows of e [points * reps] -> [points].
Tensor BlockMean(const Tensor& e, int points, int reps) {
  std::vector<double> m(points, 0);
  for (int p = 0; p < points; ++p)
    for (int r = 0; r < reps; ++r) m[p] += e[p * reps + r] / reps;
  return Tensor::FromVector({points}, m);
}

// A test-side Hutchinson estimate sum_{k<=terms} (-1)^(k+1)/k v' J^k v with
// the probe v scaled by `scale`: the nominal estimator (terms = n, scale 1)
// and deliberately wrong variants (negative controls).
Tensor Hutchinson(const ResidualBlock& f, const Tensor& x, int terms,
                  double scale, Noise noise, Rng& rng) {
  TapeScope scope;
  EnableGradScope on;
  Tensor xd = x.Detach().set_requires_grad(true);
  Tensor gx = f.Residual(xd);
  Tensor v = SampleNoise(x.shape(), noise, rng) * scale;
  Tensor w = v, est = Tensor::Zeros({x.dim(0)});
  for (int k = 1; k <= terms; ++k) {
    w = Grad({gx}, {xd}, {w})[0];  // v' J^k
    est = est + Sum(w * v, 1) * ((k % 2 ? 1.0 : -1.0) / k);
  }
  return est.Detach();
}

// The library's estimator lies within 4 SE of the exact 3-term series; the
// SE is small enough (256 probes per point per call) that a 2-term
// truncation or a probe scaled by 1.1 lies outside that band.
TEST(ResidualBlock, HutchinsonPowerSeriesIsUnbiasedForItsTruncation) {
  constexpr int kPoints = 4, kReps = 256, kDraws = 1500;
  for (Noise noise : {Noise::kRademacher, Noise::kGaussian}) {
    Rng rng(7);
    ResidualOptions o = Exact(3, 0.95);
    o.hidden = {8};
    o.estimator = LogdetEstimator::kPowerSeries;
    o.series_terms = 3;
    o.noise = noise;
    auto keep = Strong(o, rng);
    ResidualBlock& f = *keep;
    Tensor x = Tensor::Randn({kPoints, 3}, rng);
    Tensor xr = Repeat(x, kReps);
    NoGradScope no_grad;
    std::vector<double> truth = SeriesByMatrixPowers(Jacobians(f, x), 3);
    auto sampled = [&](auto est) {
      return Sampled([&] { return BlockMean(est(), kPoints, kReps); }, kPoints,
                     kDraws);
    };
    Stats lib = sampled(
        [&] { return f.Logdet(xr, LogdetEstimator::kPowerSeries, &rng); });
    Stats nominal =
        sampled([&] { return Hutchinson(f, xr, 3, 1.0, noise, rng); });
    Stats two = sampled([&] { return Hutchinson(f, xr, 2, 1.0, noise, rng); });
    Stats scaled =
        sampled([&] { return Hutchinson(f, xr, 3, 1.1, noise, rng); });
    // The band test fails if any point is outside: the controls must.
    double two_worst = 0, scaled_worst = 0;
    for (int i = 0; i < kPoints; ++i) {
      auto off = [&](const Stats& st) {  // distance from truth in SEs
        EXPECT_GT(st.se[i], 0);
        return std::fabs(st.mean[i] - truth[i]) / st.se[i];
      };
      EXPECT_LT(off(lib), 4)
          << i << " mean " << lib.mean[i] << " truth " << truth[i];
      EXPECT_LT(off(nominal), 4) << i;
      two_worst = std::max(two_worst, off(two));
      scaled_worst = std::max(scaled_worst, off(scaled));
    }
    EXPECT_GT(two_worst, 4);
    EXPECT_GT(scaled_worst, 4);
  }
}

TEST(ResidualBlock, RussianRouletteIsUnbiasedForTheFullLogdet) {
  for (RouletteDistribution dist :
       {RouletteDistribution::kGeometric, RouletteDistribution::kPoisson}) {
    for (bool exact_trace : {false, true}) {
      Rng rng(9);
      ResidualOptions o = Exact(2, 0.6);
      o.hidden = {8};
      o.estimator = LogdetEstimator::kRussianRoulette;
      o.roulette = dist;
      o.roulette_exact_terms = 1;
      o.roulette_param = dist == RouletteDistribution::kGeometric ? 0.5 : 2.0;
      o.exact_trace = exact_trace;
      auto keep = Strong(o, rng);
      ResidualBlock& f = *keep;
      Tensor x = Tensor::Randn({4, 2}, rng);
      NoGradScope no_grad;
      Tensor exact = f.Logdet(x, LogdetEstimator::kExact);
      std::vector<double> first = SeriesByMatrixPowers(Jacobians(f, x), 1);
      Stats st = Sampled(
          [&] { return f.Logdet(x, LogdetEstimator::kRussianRoulette, &rng); },
          4, 6000);
      for (int i = 0; i < 4; ++i) {
        EXPECT_LT(std::fabs(st.mean[i] - exact[i]), 4 * st.se[i])
            << i << " mean " << st.mean[i] << " exact " << exact[i];
        // Power of the test: without the random tail (the first term
        // alone) the mean would lie far outside that band.
        if (exact_trace) {
          EXPECT_GT(std::fabs(first[i] - exact[i]), 10 * st.se[i]) << i;
        }
      }
    }
  }
}

// With exact traces only the roulette draw is random: the mean gradient over
// 20000 draws lies within 4.5 SE of the exact one, while the 2-term
// truncation's gradient lies > 10 SE away in most entries (measured 15/20).
TEST(ResidualBlock, RussianRouletteGradientIsUnbiased) {
  Rng rng(12);
  ResidualOptions o = Exact(2, 0.6);
  o.hidden = {4};
  o.estimator = LogdetEstimator::kRussianRoulette;
  o.roulette_exact_terms = 1;
  o.exact_trace = true;  // only the roulette's randomness remains
  o.series_terms = 2;    // kPowerSeries: the truncated negative control
  auto keep = Strong(o, rng);
  ResidualBlock& f = *keep;
  Tensor x = Tensor::Randn({3, 2}, rng);
  std::vector<Tensor> params = f.Parameters();
  auto grads = [&](LogdetEstimator e) {
    TapeScope scope;
    std::vector<Tensor> g = Grad({Sum(f.Logdet(x, e, &rng))}, params);
    std::vector<double> flat;
    for (const Tensor& t : g)
      for (int64_t i = 0; i < t.numel(); ++i) flat.push_back(t[i]);
    return flat;
  };
  const std::vector<double> exact = grads(LogdetEstimator::kExact);
  const std::vector<double> two = grads(LogdetEstimator::kPowerSeries);
  const int m = static_cast<int>(exact.size()), draws = 20000;
  std::vector<double> s(m, 0), s2(m, 0);
  for (int k = 0; k < draws; ++k) {
    std::vector<double> g = grads(LogdetEstimator::kRussianRoulette);
    for (int i = 0; i < m; ++i) {
      s[i] += g[i];
      s2[i] += g[i] * g[i];
    }
  }
  int checked = 0, control_out = 0;
  for (int i = 0; i < m; ++i) {
    const double mean = s[i] / draws;
    const double se = std::sqrt((s2[i] / draws - mean * mean) / (draws - 1));
    if (se == 0 && exact[i] == 0) continue;
    ++checked;
    EXPECT_LT(std::fabs(mean - exact[i]), 4.5 * se + 1e-12)
        << "entry " << i << " mean " << mean << " exact " << exact[i];
    // Negative control: the 2-term truncation's gradient (deterministic).
    if (std::fabs(two[i] - exact[i]) > 10 * se) ++control_out;
  }
  EXPECT_GT(checked, m / 2);
  EXPECT_GT(control_out, checked / 2) << control_out << " of " << checked;
}

TEST(ResidualBlock, InverseHasExactSecondDerivatives) {
  // Two recorded Newton steps: H v of a loss of Inverse(z) w.r.t. z matches
  // differences of its gradient; one step (derivative of a constant start)
  // gets first derivatives right but not second ones.
  for (int steps : {2, 1}) {
    Rng rng(19);
    ResidualOptions o = Exact(3);
    o.newton_steps = steps;
    auto f = Strong(o, rng);
    Tensor z = Tensor::Randn({3, 3}, rng);
    Tensor r = Tensor::Randn({3, 3}, rng);
    auto loss = [&](const std::vector<Tensor>& in) {
      FlowResult x = f->Inverse(in[0]);
      return Sum(Square(x.value) * r) + Sum(Square(x.logdet));
    };
    const double grad_err = testing::GradientError(loss, {z});
    const double hvp_err = testing::HessianVectorError(loss, {z});
    EXPECT_LT(grad_err, 1e-6) << steps;
    if (steps == 2) {
      EXPECT_LT(hvp_err, 1e-5);
    } else {
      EXPECT_GT(hvp_err, 1e-4);  // one Newton step: second order is off
    }
  }
}

TEST(ResidualBlock, InverseReportsBadInputAndNonConvergence) {
  ResidualOptions o = Exact(2);
  Rng rng(13), same(13);
  auto f = Block(o, rng);
  o.inverse_max_iterations = 2;
  auto capped = Block(o, same);  // 2 iterations at most
  testing::PerturbParameters(*f, rng, 0.3);
  for (size_t i = 0; i < f->Parameters().size(); ++i) {  // the same weights
    Tensor dst = capped->Parameters()[i];
    const std::vector<double> v = f->Parameters()[i].ToVector();
    std::copy(v.begin(), v.end(), dst.mutable_data<double>());
  }
  Tensor z = Tensor::FromVector({2, 2}, {0.5, std::nan(""), 1.0, 2.0});
  FlowResult bad = f->Inverse(z);
  ASSERT_FALSE(bad.status.ok());
  EXPECT_NE(bad.status.message().find("not finite"), std::string::npos)
      << bad.status;
  EXPECT_TRUE(std::isnan(bad.value[0]) && std::isnan(bad.logdet[0]));

  Tensor good = Tensor::Randn({3, 2}, rng) * 3.0;
  FlowResult r2 = capped->Inverse(good);
  ASSERT_FALSE(r2.status.ok());
  EXPECT_NE(r2.status.message().find("did not converge"), std::string::npos)
      << r2.status;
  NoGradScope no_grad;  // no Newton steps: the fixed point alone
  FlowResult x = f->Inverse(good);
  EXPECT_TRUE(x.status.ok()) << x.status;
  Tensor back = f->Forward(x.value).value;
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(back[i], good[i], 1e-11);
  // In float32 the default tolerance is float32's.
  f->To(kFloat32);
  FlowResult x32 = f->Inverse(Cast(good, kFloat32));
  EXPECT_TRUE(x32.status.ok()) << x32.status;
  Tensor back32 = f->Forward(x32.value).value;
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(back32[i], good[i], 1e-4);
}

// A random estimator without an Rng is a programming error.
TEST(ResidualBlockDeathTest, RandomEstimatorNeedsAnRng) {
  ResidualOptions o = Exact(2);
  o.estimator = LogdetEstimator::kRussianRoulette;
  Rng rng(3);
  auto f = Block(o, rng);
  Tensor x = Tensor::Randn({2, 2}, rng);
  EXPECT_DEATH(f->Forward(x), "pass an Rng");
  EXPECT_TRUE(std::isfinite(f->Forward(x, Tensor(), &rng).logdet[0]));
}

// Weights edited by hand under kFrozen: each is turned orthogonal to its
// stale (u, v), so u' W v = 0 <= c and nothing is normalised, and scaled
// up, so Lip(g) >> 1 and x <- z - g(x) runs off to infinity. Inverse must
// say so in its status instead of returning x = inf with a NaN log-det.
TEST(ResidualBlock, InverseReportsDivergence) {
  for (double s : {10.0, -10.0, 1e200}) {
    Rng rng(1);
    ResidualOptions o;
    o.dim = 1;
    o.hidden = {2};
    o.spectral = SpectralMode::kFrozen;
    auto keep = Block(o, rng);
    ResidualBlock& f = *keep;
    Tensor w1 = f.layers()[0]->weight(), w2 = f.layers()[1]->weight();
    const double a = w1[0], b = w1[1], c = w2[0], d = w2[1];
    w1.mutable_data<double>()[0] = -b * 10 / std::hypot(a, b);
    w1.mutable_data<double>()[1] = a * 10 / std::hypot(a, b);
    w2.mutable_data<double>()[0] = -d * s / std::hypot(c, d);
    w2.mutable_data<double>()[1] = c * s / std::hypot(c, d);
    Tensor z = Tensor::FromVector({2, 1}, {0.5, -0.5});
    NoGradScope no_grad;
    FlowResult r = f.Inverse(z);
    ASSERT_FALSE(r.status.ok()) << s << " x " << r.value[0];
    EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status.message().find("diverged (Lip(g) >= 1?) at iteration"),
              std::string::npos)
        << r.status;
    // |s| = 10: finite but growing steps; 1e200: inf at the 2nd iterate.
    EXPECT_NE(r.status.message().find(s > 1e3 ? "non-finite" : "grew"),
              std::string::npos)
        << r.status;
    EXPECT_TRUE(std::isnan(r.value[0]) && std::isnan(r.logdet[1]));
  }
}

// kConverged differentiates sigma = u' W v with (u, v) constants, which is
// exact only if (u, v) are the singular vectors to rounding, not just sigma
// (its error is the square of theirs). With sigma_2 / sigma_1 = 0.98 the
// gradient of sum(W_sn * R) matches the one from Eigen's SVD vectors:
//   d/dW = c R / s - c <W, R> / s^2 u v'   (W_sn = c W / s, s > c).
TEST(SpectralLinear, ConvergedGradientMatchesSvd) {
  constexpr int n = 16;
  const double c = 0.5;
  Rng rng(23);
  auto keep = SpectralLinear::Create(n, n, c, rng).value();
  SpectralLinear& l = *keep;
  auto orthogonal = [&] {
    Tensor a = Tensor::Randn({n, n}, rng);
    return Mat(
        Eigen::HouseholderQR<Mat>(Eigen::Map<const Mat>(a.data<double>(), n, n))
            .householderQ());
  };
  Eigen::VectorXd sv(n);
  sv(0) = 2.0;
  sv(1) = 1.96;
  for (int i = 2; i < n; ++i) sv(i) = 1.8 * (n - i) / n;
  const Mat wm = orthogonal() * sv.asDiagonal() * orthogonal().transpose();
  Tensor w = l.weight();
  std::copy(wm.data(), wm.data() + n * n, w.mutable_data<double>());
  Tensor r = Tensor::Randn({n, n}, rng);
  Tensor g;
  {
    TapeScope scope;
    g = Grad({Sum(l.NormalizedWeight(SpectralMode::kConverged, 0) * r)}, {w})[0]
            .Detach();
  }
  Eigen::JacobiSVD<Mat> svd(wm, Eigen::ComputeFullU | Eigen::ComputeFullV);
  const double s = svd.singularValues()(0);
  ASSERT_NEAR(svd.singularValues()(1) / s, 0.98, 1e-12);
  EXPECT_NEAR(l.ConvergedSigma(), s, 1e-14 * s);
  Eigen::Map<const Mat> rm(r.data<double>(), n, n), gm(g.data<double>(), n, n);
  const Mat want = c * rm / s - c * wm.cwiseProduct(rm).sum() / (s * s) *
                                    svd.matrixU().col(0) *
                                    svd.matrixV().col(0).transpose();
  const double err =
      (gm - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff();
  EXPECT_LT(err, 1e-12);
}

TEST(ResidualBlock, TrainModeTracksSigmaOnlyWhenRecording) {
  Rng rng(17);
  ResidualOptions o = Exact(2, 0.5);
  o.spectral = SpectralMode::kTrain;
  o.power_iterations = 1;
  auto keep = Block(o, rng);
  ResidualBlock& f = *keep;
  testing::PerturbParameters(f, rng, 0.5);  // stored (u, v) now stale
  const SpectralLinear& l = *f.layers()[0];
  auto stored_sigma = [&] {  // c / scale of the frozen W_sn
    Tensor wsn = l.NormalizedWeight(SpectralMode::kFrozen, 0);
    Tensor w = l.weight();
    return wsn[0] == w[0] ? 0.0 : 0.5 * w[0] / wsn[0];
  };
  Tensor x = Tensor::Randn({4, 2}, rng);
  const double before = stored_sigma();
  {
    NoGradScope no_grad;
    f.Forward(x);
  }
  EXPECT_EQ(stored_sigma(), before);  // evaluation does not update
  for (int k = 0; k < 60; ++k) {
    TapeScope scope;
    f.Forward(x);
  }
  EXPECT_NEAR(stored_sigma(), l.ConvergedSigma(), 1e-9);
  // A change of W by hand: Refresh() converges (u, v) again.
  Tensor w = l.weight();
  for (int64_t i = 0; i < w.numel(); ++i) w.mutable_data<double>()[i] *= -1.5;
  EXPECT_GT(std::fabs(stored_sigma() - l.ConvergedSigma()), 0.1);
  f.RefreshSpectralNorms();
  EXPECT_NEAR(stored_sigma(), l.ConvergedSigma(), 1e-12);
}

std::vector<double> EvalLogProb(const FlowModel& m, const Tensor& x) {
  NoGradScope no_grad;
  return m.LogProb(x).ToVector();
}

void TrainSteps(const FlowModel& m, nn::Optimizer& opt, const Tensor& x,
                int steps) {
  for (int k = 0; k < steps; ++k) {
    opt.ZeroGrad();
    Backward(m.Nll(x));
    Tape::Get().Reset();
    opt.Step();
  }
}

// A residual flow trained a few steps in kTrain (one power step per call, so
// (u, v) lag W) is saved and loaded into a fresh model built from another
// seed: log-probs agree to 1e-14 under NoGradScope without
// RefreshSpectralNorms, and training resumes identically. Copying only the
// parameters (what checkpoints did before buffers) gives another density.
TEST(ResidualFlow, CheckpointRoundTripReproducesLogProb) {
  ResidualOptions o = Exact(2, 0.7);
  o.spectral = SpectralMode::kTrain;
  o.power_iterations = 1;
  auto make = [&](uint64_t seed) {
    Rng rng(seed);
    return std::make_shared<FlowModel>(
        StandardNormal::Create(Shape({2})).value(),
        ResidualFlow(o, 2, rng).value());
  };
  auto a = make(1), b = make(2), params_only = make(3);
  Rng data(7);
  Tensor x = Tensor::Randn({16, 2}, data) * 1.5 + 0.5;
  nn::AdamOptions ao;
  ao.lr = 0.05;
  auto opt_a = nn::Adam::Create(*a, ao).value();
  auto opt_b = nn::Adam::Create(*b, ao).value();
  TrainSteps(*a, *opt_a, x, 5);
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/resflow.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, *a, opt_a.get()).ok());
  absl::Status s = nn::LoadCheckpoint(path, *b, opt_b.get());
  ASSERT_TRUE(s.ok()) << s;
  // Three layers' (u, v) and one ActNorm flag per block, the base's
  // normalising constant.
  EXPECT_EQ(b->NamedBuffers().size(), 2u * (3 * 2 + 1) + 1);

  const std::vector<double> want = EvalLogProb(*a, x);
  std::vector<double> got = EvalLogProb(*b, x);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-14);

  auto pa = a->NamedParameters(), pp = params_only->NamedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    Tensor dst = pp[i].second;
    const std::vector<double> v = pa[i].second.ToVector();
    std::copy(v.begin(), v.end(), dst.mutable_data<double>());
  }
  std::vector<double> stale = EvalLogProb(*params_only, x);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(stale[i] - want[i]));
  EXPECT_GT(worst, 1e-6);

  TrainSteps(*a, *opt_a, x, 2);  // kTrain updates (u, v) in place on both
  TrainSteps(*b, *opt_b, x, 2);
  got = EvalLogProb(*b, x);
  const std::vector<double> want2 = EvalLogProb(*a, x);
  for (size_t i = 0; i < want2.size(); ++i)
    EXPECT_NEAR(got[i], want2[i], 1e-14);
}

TEST(ResidualBlock, ValidatesOptions) {
  ResidualOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.lipschitz = 1.0;
  absl::Status s = o.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("(0, 1)"), std::string::npos) << s;
  Rng rng(1);
  EXPECT_EQ(ResidualBlock::Create(o, rng).status(), s);
  o = ResidualOptions();
  o.roulette_param = 1.5;
  EXPECT_FALSE(o.Validate().ok());
  o = ResidualOptions();
  o.hidden = {4, 0};
  EXPECT_FALSE(o.Validate().ok());
  o = ResidualOptions();
  o.inverse_tol = -1;
  EXPECT_FALSE(o.Validate().ok());
  EXPECT_FALSE(ResidualFlow(ResidualOptions(), 0, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows
