// The resampled base (resampled.h): its density integrates to the value
// the Monte Carlo normaliser implies (1 up to the estimate's error), its
// sampler draws from the truncated density with the exact Z, gradients
// w.r.t. x and every parameter match finite differences, and a fresh (or
// T = 1) distribution is the standard normal; trained by maximum
// likelihood (fresh proposals every step) its stored Z^ matches a quadrature
// of a(z) pi(z), and FlowModel::Score draws fresh proposals only in training.
#include "flows/resampled.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/flow_model.h"
#include "flows/scaling.h"
#include "gtest/gtest.h"
#include "nn/optim.h"
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

// Maximum likelihood on a known density (an equal mixture of N((+-2, 0),
// 0.5^2 I), log-normaliser 0 by construction), trained as FlowModel::Score
// trains a base: LogProbEstimate with the step's rng under a tape, so every
// step draws fresh proposals. The trained acceptance must fit the data
// (test log-likelihood well above the standard normal's), and the model's
// Z^ (its buffer of S proposals, which training never read) must agree
// with Z = int a(z) pi(z) dz by quadrature within 4 standard errors of a
// mean of S terms; so must the mean of the per-step training estimates. A
// buffer read by training would be overfitted: maximum likelihood lowers
// a(z_s) at exactly the S points, and Z^ falls many standard errors below
// the quadrature.
TEST(Resampled, TrainedNormaliserMatchesQuadrature) {
  Rng rng(11);
  ResampledOptions o;
  o.dim = 2;
  o.hidden = {64, 64};
  o.truncation = 100;
  o.normaliser_samples = 64;
  auto p = ResampledNormal::Create(o, rng).value();
  auto draw = [&](int64_t n) {
    std::vector<double> v(2 * n);
    for (int64_t i = 0; i < n; ++i) {
      v[2 * i] = (rng.Uniform() < 0.5 ? -2.0 : 2.0) + 0.5 * rng.Normal();
      v[2 * i + 1] = 0.5 * rng.Normal();
    }
    return Tensor::FromVector({n, 2}, v);
  };
  auto log_target = [](const Tensor& x, int64_t i) {
    const double a = x[2 * i], b = x[2 * i + 1];
    const double c = -std::log(2 * M_PI * 0.25) - b * b / 0.5;
    return std::log(0.5 * std::exp(c - (a - 2) * (a - 2) / 0.5) +
                    0.5 * std::exp(c - (a + 2) * (a + 2) / 0.5));
  };
  const std::vector<double> buffer_before =
      p->NamedBuffers().front().second.ToVector();
  nn::AdamOptions adam_options;
  adam_options.lr = 1e-2;
  auto opt_ptr = nn::Adam::Create(p->Parameters(), adam_options).value();
  nn::Adam& opt = *opt_ptr;
  for (int step = 0; step < 400; ++step) {
    TapeScope scope;
    opt.ZeroGrad();
    Backward(-Mean(p->LogProbEstimate(draw(256), &rng)));
    opt.Step();
  }
  NoGradScope no_grad;
  for (const auto& [name, t] : p->NamedBuffers()) {
    if (name == "proposals") {
      EXPECT_EQ(t.ToVector(), buffer_before);
    }
  }
  // Fitted: within 0.75 nats of the target's log-likelihood (-2.15 nats;
  // the standard normal's is -4.09; a(z) pi(z) / Z with T = 100 is about
  // 0.6 nats short of the target after 400 steps).
  const Tensor test = draw(20000);
  const Tensor lp = p->LogProb(test);
  double model_ll = 0, target_ll = 0, normal_ll = 0;
  for (int64_t i = 0; i < 20000; ++i) {
    model_ll += lp[i] / 20000;
    target_ll += log_target(test, i) / 20000;
    normal_ll += LogNormal(test, i, 2) / 20000;
  }
  EXPECT_GT(model_ll, target_ll - 0.75);
  EXPECT_LT(normal_ll, target_ll - 1.5);
  // Z by quadrature on [-9, 9]^2 (pi's mass outside is < 1e-17).
  double volume = 0;
  const Tensor grid = Grid(2, 9.0, 600, &volume);
  const Tensor a_grid = p->Acceptance(grid);
  double z_quad = 0;
  for (int64_t i = 0; i < grid.dim(0); ++i)
    z_quad += a_grid[i] * std::exp(LogNormal(grid, i, 2)) * volume;
  // The buffer's estimate and its standard error.
  const Tensor proposals = p->NamedBuffers().front().second;
  const Tensor a_buf = p->Acceptance(proposals);
  const int64_t s = o.normaliser_samples;
  double mean = 0, var = 0;
  for (int64_t i = 0; i < s; ++i) mean += a_buf[i] / s;
  for (int64_t i = 0; i < s; ++i)
    var += (a_buf[i] - mean) * (a_buf[i] - mean) / (s - 1);
  const double se = std::sqrt(var / s);
  EXPECT_NEAR(p->Normaliser().item(), mean, 1e-12);
  EXPECT_LT(std::fabs(std::log(mean) - std::log(z_quad)), 4 * se / z_quad)
      << "Z^ " << mean << " (se " << se << "), quadrature " << z_quad;
  // The training estimator: the mean of 400 per-step estimates.
  double steps_mean = 0;
  for (int k = 0; k < 400; ++k) {
    const Tensor z = Tensor::Randn({s, 2}, rng);
    steps_mean += Mean(p->Acceptance(z)).item() / 400;
  }
  EXPECT_NEAR(steps_mean, z_quad, 4 * se / std::sqrt(400.0) + 1e-12);
  // The trained density integrates to 1 up to Z^'s error.
  const Tensor lp_grid = p->LogProb(grid);
  double mass = 0;
  for (int64_t i = 0; i < grid.dim(0); ++i)
    mass += std::exp(lp_grid[i]) * volume;
  const double alpha = std::pow(1 - mean, o.truncation - 1);
  EXPECT_NEAR(mass, (1 - alpha) * z_quad / mean + alpha, 1e-6);
}

// Under a flow, FlowModel::Score hands the base its rng: while a tape
// records, log p uses a fresh Z^ (another value, the buffer unchanged);
// without recording or without rng it is LogProb's, bit for bit.
TEST(Resampled, FlowModelScoreDrawsFreshProposalsOnlyWhenTraining) {
  Rng rng(12);
  auto base = Make(2, 10, rng, 1.0, 256);
  auto model = std::make_shared<FlowModel>(
      base, flows::Scaling::Create(Shape{2}).value());
  const Tensor x = Tensor::Randn({4, 2}, rng);
  Tensor fixed, scored_no_tape, scored_no_rng, trained;
  {
    NoGradScope no_grad;
    fixed = model->LogProb(x);
    scored_no_tape = model->Score(x, Tensor(), &rng).log_prob;
  }
  {
    TapeScope scope;
    scored_no_rng = model->Score(x).log_prob.Detach();
    trained = model->Score(x, Tensor(), &rng).log_prob.Detach();
  }
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(scored_no_tape[i], fixed[i]);
    EXPECT_EQ(scored_no_rng[i], fixed[i]);
    // Another Z^ (S = 256 fresh proposals): another log p.
    EXPECT_GT(std::fabs(trained[i] - fixed[i]), 1e-6);
  }
  NoGradScope no_grad;
  EXPECT_EQ(model->LogProb(x)[0], fixed[0]);  // the buffer was not redrawn
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
