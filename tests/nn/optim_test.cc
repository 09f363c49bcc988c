// Optimizers, schedules and clipping against hand-computed values.
#include "nn/optim.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/layers.h"
#include "nn/schedule.h"
#include "tests/float32_tolerance.h"

namespace flowtape::nn {
namespace {

// `base` (by default the default options) with one field set to `value`.
template <typename Options, typename T, typename V>
Options With(T Options::*field, V value, Options base = Options()) {
  base.*field = value;
  return base;
}

// Sets p.grad() to the gradient of sum(w * p^2) / 2, i.e. w * p.
void QuadraticGrad(const Tensor& p, const Tensor& w) {
  Tensor q = p;
  q.ZeroGrad();
  Backward(Sum(w * Square(p)) * 0.5);
  Tape::Get().Reset();
}

// Sets p.grad() = c (gradient of sum(c * p)).
void LinearGrad(const Tensor& p, const Tensor& c) {
  Tensor q = p;
  q.ZeroGrad();
  Backward(Sum(c * p));
  Tape::Get().Reset();
}

template <typename Options>
Options Lr(double lr) {
  Options o;
  o.lr = lr;
  return o;
}

Tensor Param(std::vector<double> v) {
  return Tensor::FromVector({static_cast<int64_t>(v.size())}, v)
      .set_requires_grad(true);
}

TEST(Sgd, MomentumAndWeightDecayTwoSteps) {
  Tensor p = Param({1.0, -2.0});
  Tensor c = Tensor::FromVector({2}, {0.5, 1.0});
  SgdOptions o;
  o.lr = 0.1;
  o.momentum = 0.9;
  o.weight_decay = 0.01;
  auto opt = Sgd::Create({p}, o).value();
  LinearGrad(p, c);
  opt->Step();
  // d = c + 0.01 p = [0.51, 0.98]; b = d; p -= 0.1 b.
  EXPECT_NEAR(p[0], 0.949, 1e-15);
  EXPECT_NEAR(p[1], -2.098, 1e-15);
  LinearGrad(p, c);
  opt->Step();
  // d = [0.50949, 0.97902]; b = 0.9 [0.51, 0.98] + d = [0.96849, 1.86102].
  EXPECT_NEAR(p[0], 0.852151, 1e-15);
  EXPECT_NEAR(p[1], -2.284102, 1e-15);
  EXPECT_EQ(opt->step_count(), 2);
}

TEST(Sgd, PlainAndNesterov) {
  Tensor p = Param({1.0, -2.0}), q = Param({1.0, -2.0});
  Tensor c = Tensor::FromVector({2}, {0.5, 1.0});
  SgdOptions o;
  o.lr = 0.1;
  auto plain = Sgd::Create({p}, o).value();
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 0.01;
  auto nesterov = Sgd::Create({q}, o).value();
  LinearGrad(p, c);
  LinearGrad(q, c);
  plain->Step();
  nesterov->Step();
  EXPECT_NEAR(p[0], 0.95, 1e-15);
  EXPECT_NEAR(p[1], -2.1, 1e-15);
  // d = [0.51, 0.98]; b = d; step d + 0.9 b = 1.9 d = [0.969, 1.862].
  EXPECT_NEAR(q[0], 0.9031, 1e-15);
  EXPECT_NEAR(q[1], -2.1862, 1e-15);
}

TEST(Adam, FirstStepIsSignedLr) {
  // Bias correction makes step 1: p -= lr g / (|g| + eps).
  Tensor p = Param({1.0, -2.0, 0.5});
  Tensor c = Tensor::FromVector({3}, {0.5, -4.0, 1e-3});
  auto opt = Adam::Create({p}, Lr<AdamOptions>(0.1)).value();
  LinearGrad(p, c);
  opt->Step();
  EXPECT_NEAR(p[0], 1.0 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_NEAR(p[1], -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 1e-15);
  EXPECT_NEAR(p[2], 0.5 - 0.1 * 1e-3 / (1e-3 + 1e-8), 1e-15);
}

// Three steps on sum(w p^2)/2 (gradient w * p), p0 = [1, -2, 0.5],
// w = [1, 3, 0.2], lr 0.1, betas (0.9, 0.999), eps 1e-8. Reference values
// from an independent scalar transcription of the papers' update rules.
struct AdamCase {
  bool decoupled;
  double wd;
  double want[3];
};

TEST(Adam, ThreeStepsMatchReference) {
  const AdamCase cases[] = {
      {false,
       0.0,
       {0.70158627450441502, -1.7006233917912488, 0.20487128117265999}},
      {false,
       0.1,
       {0.70158627422107234, -1.7006233917747833, 0.20487127057549021}},
      {true,
       0.1,
       {0.67510122318920074, -1.6443686833067828, 0.19341563267674738}},
  };
  Tensor w = Tensor::FromVector({3}, {1.0, 3.0, 0.2});
  for (const AdamCase& c : cases) {
    Tensor p = Param({1.0, -2.0, 0.5});
    AdamOptions o = Lr<AdamOptions>(0.1);
    o.weight_decay = c.wd;
    std::shared_ptr<Optimizer> opt;
    if (c.decoupled)
      opt = AdamW::Create(std::vector<Tensor>{p}, o).value();
    else
      opt = Adam::Create(std::vector<Tensor>{p}, o).value();
    for (int t = 0; t < 3; ++t) {
      QuadraticGrad(p, w);
      opt->Step();
    }
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], c.want[i], 1e-14) << i;
  }
}

TEST(Adam, ConvergesOnQuadratic) {
  // f(x) = sum((x - t)^2 * s) with an ill-conditioned diagonal s.
  Tensor x = Param({3.0, -1.0, 0.0, 10.0});
  Tensor target = Tensor::FromVector({4}, {1.0, 2.0, -3.0, 0.5});
  Tensor s = Tensor::FromVector({4}, {1.0, 100.0, 0.01, 5.0});
  auto opt = Adam::Create({x}, Lr<AdamOptions>(0.1)).value();
  opt->set_schedule(CosineAnnealingLr(0.1, 3000));
  for (int t = 0; t < 3000; ++t) {
    opt->ZeroGrad();
    Backward(Sum(Square(x - target) * s));
    Tape::Get().Reset();
    opt->Step();
  }
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(x[i], target[i], 1e-4) << i;
}

TEST(Optimizer, SkipsParametersWithoutGradAndExposesState) {
  Tensor a = Param({1.0}), b = Param({2.0, 3.0});
  auto opt = Adam::Create({a, b}, Lr<AdamOptions>(0.5)).value();
  LinearGrad(a, Tensor::FromVector({1}, {1.0}));
  b.ZeroGrad();
  opt->Step();
  EXPECT_NEAR(a[0], 0.5, 1e-7);
  EXPECT_EQ(b[0], 2.0);
  NamedTensors st = opt->NamedState();
  ASSERT_EQ(st.size(), 7u);
  EXPECT_EQ(st[0].first, "step");
  EXPECT_EQ(st[0].second.item(), 1.0);
  EXPECT_EQ(st[1].first, "param0.exp_avg");
  EXPECT_NEAR(st[1].second[0], 0.1, 1e-16);
  EXPECT_EQ(st[4].first, "param1.exp_avg_sq");
  EXPECT_EQ(st[4].second[1], 0.0);
  EXPECT_EQ(st[5].first, "param0.step");  // per-parameter update counts
  EXPECT_EQ(st[5].second.item(), 1.0);
  EXPECT_EQ(st[6].first, "param1.step");
  EXPECT_EQ(st[6].second.item(), 0.0);
  // Writing into the state restores it (what checkpoints do).
  st[0].second.mutable_data<double>()[0] = 7.0;
  EXPECT_EQ(opt->step_count(), 7);
}

// Bias correction counts each parameter's own updates (as PyTorch): one that
// first gets a gradient at global step 101 takes a first step, lr g / (|g| +
// eps), not lr (m / c1) / sqrt(v / c2) with c2 = 1 - 0.999^101 (0.98 lr).
TEST(Adam, LateParameterTakesAFirstStep) {
  for (bool decoupled : {false, true}) {
    Tensor a = Param({1.0}), b = Param({2.0, -3.0});
    const double lr = 0.1;
    std::shared_ptr<Optimizer> opt;
    if (decoupled)
      opt =
          AdamW::Create(std::vector<Tensor>{a, b}, Lr<AdamOptions>(lr)).value();
    else
      opt =
          Adam::Create(std::vector<Tensor>{a, b}, Lr<AdamOptions>(lr)).value();
    for (int t = 0; t < 100; ++t) {
      LinearGrad(a, Tensor::FromVector({1}, {1.0}));
      b.ZeroGrad();
      opt->Step();
    }
    EXPECT_EQ(b.ToVector(), (std::vector<double>{2.0, -3.0}));
    LinearGrad(b, Tensor::FromVector({2}, {0.5, -4.0}));
    opt->Step();
    EXPECT_NEAR(b[0], 2.0 - lr * 0.5 / (0.5 + 1e-8), 1e-15);
    EXPECT_NEAR(b[1], -3.0 + lr * 4.0 / (4.0 + 1e-8), 1e-15);
    EXPECT_NEAR(b[0], 2.0 - lr, 1e-8);  // lr sign(g), up to eps
    NamedTensors st = opt->NamedState();
    EXPECT_EQ(st[0].second.item(), 101.0);  // global
    EXPECT_EQ(st.back().first, "param1.step");
    EXPECT_EQ(st.back().second.item(), 1.0);
    EXPECT_EQ(st[st.size() - 2].second.item(), 101.0);  // param0.step
  }
}

TEST(Schedule, Values) {
  EXPECT_EQ(ConstantLr(0.3)(1000), 0.3);
  Schedule s = StepDecayLr(1.0, 10, 0.5);
  EXPECT_EQ(s(0), 1.0);
  EXPECT_EQ(s(9), 1.0);
  EXPECT_EQ(s(10), 0.5);
  EXPECT_EQ(s(25), 0.25);
  EXPECT_NEAR(ExponentialLr(2.0, 0.9)(3), 2.0 * 0.729, 1e-15);
  Schedule cos = CosineAnnealingLr(1.0, 100, 0.1);
  EXPECT_NEAR(cos(0), 1.0, 1e-15);
  EXPECT_NEAR(cos(50), 0.55, 1e-15);
  EXPECT_NEAR(cos(25), 0.1 + 0.9 * 0.5 * (1 + std::sqrt(0.5)), 1e-15);
  EXPECT_EQ(cos(100), 0.1);
  EXPECT_EQ(cos(1000), 0.1);
  Schedule w = LinearWarmup(4, StepDecayLr(1.0, 2, 0.1));
  EXPECT_NEAR(w(0), 0.25, 1e-15);
  EXPECT_NEAR(w(3), 1.0, 1e-15);
  EXPECT_NEAR(w(4), 1.0, 1e-15);  // wrapped schedule at its step 0
  EXPECT_NEAR(w(6), 0.1, 1e-15);  // its step 2
}

TEST(Optimizer, UsesScheduleAtCurrentStep) {
  Tensor p = Param({0.0});
  auto opt = Sgd::Create({p}, Lr<SgdOptions>(1.0)).value();
  opt->set_schedule(StepDecayLr(1.0, 1, 0.5));  // 1, 0.5, 0.25
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(opt->lr(), std::pow(0.5, t));
    LinearGrad(p, Tensor::FromVector({1}, {1.0}));
    opt->Step();
  }
  EXPECT_EQ(p[0], -1.75);
}

TEST(Clip, GlobalNormScalesAllAndReturnsPreClipNorm) {
  Tensor a = Param({0.0, 0.0}), b = Param({0.0});
  LinearGrad(a, Tensor::FromVector({2}, {3.0, 4.0}));
  LinearGrad(b, Tensor::FromVector({1}, {12.0}));
  EXPECT_DOUBLE_EQ(ClipGradNorm({a, b}, 20.0), 13.0);  // no change
  EXPECT_EQ(a.grad()[1], 4.0);
  EXPECT_DOUBLE_EQ(ClipGradNorm({a, b}, 6.5), 13.0);
  EXPECT_DOUBLE_EQ(a.grad()[0], 1.5);
  EXPECT_DOUBLE_EQ(a.grad()[1], 2.0);
  EXPECT_DOUBLE_EQ(b.grad()[0], 6.0);
  EXPECT_DOUBLE_EQ(ClipGradNorm({a, b}, 100.0), 6.5);
}

// Squares of 1e200 overflow and of 1e-200 underflow; the norm must not, and
// clipping keeps the direction. A norm above DBL_MAX is inf, yet clips right.
TEST(Clip, GlobalNormOfHugeAndTinyGradients) {
  for (double scale : {1e200, 1e-200}) {
    Tensor a = Param({0.0, 0.0}), b = Param({0.0});
    LinearGrad(a, Tensor::FromVector({2}, {3.0 * scale, -4.0 * scale}));
    LinearGrad(b, Tensor::FromVector({1}, {12.0 * scale}));
    EXPECT_NEAR(ClipGradNorm({a, b}, 6.5 * scale), 13.0 * scale, 1e-14 * scale);
    EXPECT_NEAR(a.grad()[0], 1.5 * scale, 1e-14 * scale);
    EXPECT_NEAR(a.grad()[1], -2.0 * scale, 1e-14 * scale);
    EXPECT_NEAR(b.grad()[0], 6.0 * scale, 1e-14 * scale);
  }
  Tensor c = Param({0.0, 0.0});
  LinearGrad(c, Tensor::FromVector({2}, {1.5e308, -1.5e308}));
  EXPECT_EQ(ClipGradNorm({c}, 1.0), HUGE_VAL);
  EXPECT_NEAR(c.grad()[0], std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(c.grad()[1], -std::sqrt(0.5), 1e-15);
}

// A NaN entry beside zeros (max |g| = 0 skipped the sum of squares: norm 0)
// or beside an infinite one (norm inf): the norm is NaN either way, and no
// gradient is rescaled, so the caller's finiteness check sees the NaN.
TEST(Clip, GlobalNormOfANanGradientIsNan) {
  for (double other : {0.0, HUGE_VAL, 40.0}) {
    Tensor a = Param({0.0, 0.0}), b = Param({0.0});
    LinearGrad(a, Tensor::FromVector({2}, {0.0, std::nan("")}));
    LinearGrad(b, Tensor::FromVector({1}, {other}));
    EXPECT_TRUE(std::isnan(ClipGradNorm({a, b}, 1.0))) << other;
    EXPECT_EQ(b.grad()[0], other);
  }
}

TEST(Clip, ByValue) {
  Tensor a = Param({0.0, 0.0, 0.0});
  LinearGrad(a, Tensor::FromVector({3}, {-3.0, 0.2, 5.0}));
  ClipGradValue({a}, 1.0);
  EXPECT_EQ(a.grad().ToVector(), (std::vector<double>{-1.0, 0.2, 1.0}));
}

// ---- float32: optimizer state in the parameter's dtype ----

// Rounded to float32 and held in float64.
Tensor Rounded(const Tensor& t) {
  return Cast(Cast(t, kFloat32), kFloat64).Detach();
}

// Compares every parameter and state tensor of a float32 run with its
// float64 twin: the float32 ones are float32 (the update counters stay
// float64, exact) and agree to Float32Tol(); k = 8 covers the
// accumulation of one rounding per step over the runs' 12 steps.
void ExpectTwins(const Optimizer& o32, const Optimizer& o64,
                 const std::string& what) {
  const NamedTensors s32 = o32.NamedState(), s64 = o64.NamedState();
  NamedTensors p32 = o32.named_parameters(), p64 = o64.named_parameters();
  NamedTensors all32 = s32, all64 = s64;
  all32.insert(all32.end(), p32.begin(), p32.end());
  all64.insert(all64.end(), p64.begin(), p64.end());
  ASSERT_EQ(all32.size(), all64.size()) << what;
  for (size_t k = 0; k < all32.size(); ++k) {
    const auto& [name, a] = all32[k];
    const Tensor& b = all64[k].second;
    const bool counter =
        name == "step" ||
        (name.size() > 5 && name.substr(name.size() - 5) == ".step");
    EXPECT_EQ(a.dtype(), counter ? kFloat64 : kFloat32) << what << " " << name;
    ASSERT_EQ(a.shape(), b.shape()) << what << " " << name;
    for (int64_t i = 0; i < a.numel(); ++i)
      EXPECT_LT(testing::Float32Err(a[i], b[i]), testing::Float32Tol(1, 8))
          << what << " " << name << "[" << i << "]: float32 " << a[i]
          << ", float64 " << b[i];
  }
}

// SGD (plain; momentum, Nesterov and weight decay), Adam (L2) and AdamW
// (decoupled decay) on sum(w p^2) / 2 for 12 steps in float32 and float64
// from the same float32-representable start: the same trajectory, with the
// moments in float32 (checked after every step).
TEST(OptimizerFloat32, StateInTheParametersDTypeMatchesFloat64) {
  using Make =
      std::function<std::shared_ptr<Optimizer>(std::vector<Tensor> params)>;
  SgdOptions heavy = Lr<SgdOptions>(0.05);
  heavy.momentum = 0.9;
  heavy.nesterov = true;
  heavy.weight_decay = 0.1;
  AdamOptions adam = Lr<AdamOptions>(0.1);
  adam.weight_decay = 0.1;
  const std::vector<std::pair<std::string, Make>> cases = {
      {"sgd",
       [](std::vector<Tensor> p) {
         return Sgd::Create(std::move(p), Lr<SgdOptions>(0.1)).value();
       }},
      {"sgd_nesterov_wd",
       [heavy](std::vector<Tensor> p) {
         return Sgd::Create(std::move(p), heavy).value();
       }},
      {"adam_l2",
       [adam](std::vector<Tensor> p) {
         return Adam::Create(std::move(p), adam).value();
       }},
      {"adamw",
       [adam](std::vector<Tensor> p) {
         return AdamW::Create(std::move(p), adam).value();
       }},
  };
  Rng rng(1);
  const Tensor start = Rounded(Tensor::Randn({7}, rng));
  const Tensor w = Rounded(0.5 + 1.5 * Tensor::Rand({7}, rng));
  for (const auto& [name, make] : cases) {
    Tensor p32 = Cast(start, kFloat32).Detach().set_requires_grad(true);
    Tensor p64 = start.Detach().set_requires_grad(true);
    std::shared_ptr<Optimizer> o32 = make({p32}), o64 = make({p64});
    for (int t = 0; t < 12; ++t) {
      QuadraticGrad(p32, Cast(w, kFloat32));
      QuadraticGrad(p64, w);
      ASSERT_EQ(p32.grad().dtype(), kFloat32);
      o32->Step();
      o64->Step();
      ExpectTwins(*o32, *o64, name + " step " + std::to_string(t + 1));
    }
    // The run moved the parameters (else the comparison is empty).
    EXPECT_GT(std::fabs(p64[0] - start[0]), 1e-2) << name;
  }
}

// A module converted with Module::To after its optimizer was built: the
// state follows the parameters' dtype at the next step and the run goes on
// as the float64 one does.
TEST(OptimizerFloat32, StateFollowsModuleTo) {
  Rng r32(2), r64(2), rx(3);
  auto m32_ptr = Linear::Create(3, 2, r32).value();
  auto m64_ptr = Linear::Create(3, 2, r64).value();
  Linear &m32 = *m32_ptr, &m64 = *m64_ptr;
  m32.To(kFloat32);  // the twins start from the same (rounded) values
  m32.To(kFloat64);
  m64.To(kFloat32);
  m64.To(kFloat64);
  const Tensor x = Rounded(Tensor::Randn({5, 3}, rx));
  auto o32 = Adam::Create(m32, Lr<AdamOptions>(0.05)).value();
  auto o64 = Adam::Create(m64, Lr<AdamOptions>(0.05)).value();
  auto step = [&x](Linear& m, Optimizer& o) {
    o.ZeroGrad();
    Backward(Sum(Square(m(Cast(x, m.dtype())))));
    Tape::Get().Reset();
    o.Step();
  };
  step(m32, *o32);  // one float64 step each: state in float64
  step(m64, *o64);
  for (const auto& [name, t] : o32->NamedState())
    EXPECT_EQ(t.dtype(), kFloat64) << name;
  m32.To(kFloat32);
  for (int t = 0; t < 4; ++t) {
    step(m32, *o32);
    step(m64, *o64);
  }
  // The float64 step (before the conversion) left unrounded values: their
  // rounding is one more error of the same size.
  ExpectTwins(*o32, *o64, "after Module::To");
}

// ClipGradNorm and ClipGradValue on float32 gradients: the norm as in
// float64 and the gradients scaled in place, still float32.
TEST(ClipFloat32, ScalesFloat32GradientsInPlace) {
  Tensor a = Tensor::Zeros({2}, kFloat32).set_requires_grad(true);
  Tensor b = Tensor::Zeros({1}, kFloat32).set_requires_grad(true);
  Backward(Sum(a * Tensor::FromVector({2}, {3.0, 4.0}, kFloat32)) +
           Sum(b * Tensor::FromVector({1}, {12.0}, kFloat32)));
  Tape::Get().Reset();
  EXPECT_NEAR(ClipGradNorm({a, b}, 1.0), 13.0, 1e-6);
  ASSERT_EQ(a.grad().dtype(), kFloat32);
  EXPECT_NEAR(a.grad()[0], 3.0 / 13, 1e-7);
  EXPECT_NEAR(a.grad()[1], 4.0 / 13, 1e-7);
  EXPECT_NEAR(b.grad()[0], 12.0 / 13, 1e-7);
  ClipGradValue({a, b}, 0.5);
  EXPECT_EQ(b.grad().dtype(), kFloat32);
  EXPECT_EQ(b.grad()[0], 0.5);
  EXPECT_NEAR(a.grad()[1], 4.0 / 13, 1e-7);
}

// Bad options and non-parameters are a Status naming the problem (no abort).
TEST(Optimizer, BadOptionsAreAStatus) {
  Tensor p = Param({1.0});
  auto expect = [](const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  expect(Adam::Create({p}, With(&AdamOptions::beta1, 1.0)).status(),
         "beta1 = 1");
  expect(Adam::Create({p}, With(&AdamOptions::beta2, -0.1)).status(),
         "beta2 = -0.1");
  expect(AdamW::Create({p}, With(&AdamOptions::lr, std::nan(""))).status(),
         "lr = nan");
  expect(Adam::Create({p}, With(&AdamOptions::eps, 0.0)).status(), "eps = 0");
  expect(Adam::Create({p}, With(&AdamOptions::weight_decay, -1.0)).status(),
         "weight_decay = -1");
  expect(Sgd::Create(
             {p}, With(&SgdOptions::nesterov, true, With(&SgdOptions::lr, 0.1)))
             .status(),
         "nesterov needs momentum > 0");
  expect(Sgd::Create({p}, With(&SgdOptions::lr, INFINITY)).status(),
         "lr = inf");
  expect(Adam::Create({p}, With(&AdamOptions::lr, -1e-3)).status(),
         "lr = -0.001");
  // A frozen run.
  EXPECT_TRUE(Sgd::Create({p}, With(&SgdOptions::lr, 0.0)).ok());
  expect(Sgd::Create({p}, With(&SgdOptions::momentum, -0.5)).status(),
         "momentum = -0.5");
  expect(Adam::Create({Tensor::FromVector({1}, {1.0})}, {}).status(),
         "'param0' is not a parameter");
  EXPECT_TRUE(Adam::Create({p}, With(&AdamOptions::lr, 1e-3)).ok());
  EXPECT_TRUE(Sgd::Create({p}, With(&SgdOptions::nesterov, true,
                                    With(&SgdOptions::momentum, 0.9)))
                  .ok());
  EXPECT_TRUE(AdamOptions{}.Validate().ok());
  EXPECT_TRUE(SgdOptions{}.Validate().ok());
}

}  // namespace
}  // namespace flowtape::nn
