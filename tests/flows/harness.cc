#include "tests/flows/harness.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "nn/optim.h"
#include "tests/gradcheck.h"
#include "training/train.h"

namespace flowtape::testing {

void PerturbParameters(const nn::Module& m, Rng& rng, double scale) {
  for (Tensor p : m.Parameters())
    VisitDType(p.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* v = p.mutable_data<T>();
      for (int64_t i = 0; i < p.numel(); ++i)
        v[i] += static_cast<T>(scale * rng.Normal());
    });
}

Float32Tolerances::Float32Tolerances(const FlowCase& c) {
  const double d = static_cast<double>(c.event_shape.numel());
  value = Float32Tol(d, c.float32_condition);
  logdet = Float32SumTol(d, c.float32_condition);
  integral = std::max(c.integral_tol, 4 * logdet);
}

double LogAbsDetOf(const double* a, int64_t n) {
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic,
                                 Eigen::RowMajor>>
      m(a, n, n);
  Eigen::FullPivLU<Eigen::MatrixXd> lu(m);
  const Eigen::MatrixXd& u = lu.matrixLU();
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::log(std::fabs(u(i, i)));
  return s;
}

namespace {

using flows::Flow;
using flows::FlowResult;

Shape BatchShape(const FlowCase& c, int64_t n) {
  std::vector<int64_t> d = c.event_shape.dims();
  d.insert(d.begin(), n);
  return Shape(d);
}

// A flow of the case with perturbed parameters, plus inputs and context.
struct Instance {
  std::shared_ptr<Flow> flow;
  Tensor x, z, context;
};

// Built and perturbed in float64, then converted to `dtype` with its
// inputs, so both dtypes see the same (rounded) numbers. The case's float32
// factory (if any) builds it when `dtype` is float32 or `float32_factory`.
Instance Make(const FlowCase& c, uint64_t seed, DType dtype = kFloat64,
              bool float32_factory = false) {
  Rng rng(seed);
  Instance s;
  const bool other =
      c.float32_make != nullptr && (dtype == kFloat32 || float32_factory);
  s.flow = other ? c.float32_make(rng) : c.make(rng);
  if (c.perturb > 0) PerturbParameters(*s.flow, rng, c.perturb);
  s.x = (Tensor::Randn(BatchShape(c, c.batch), rng) * c.input_scale).Detach();
  s.z = Tensor::Randn(BatchShape(c, c.batch), rng);
  if (c.context_dim > 0)
    s.context = Tensor::Randn({c.batch, c.context_dim}, rng);
  if (dtype != kFloat64) {
    s.flow->To(dtype);
    for (Tensor* t : {&s.x, &s.z, &s.context})
      if (t->defined()) *t = Cast(*t, dtype).Detach();
  }
  return s;
}

double ValueTol(const FlowCase& c, DType dtype) {
  return dtype == kFloat64 ? c.inverse_tol : Float32Tolerances(c).value;
}
double LogdetTol(const FlowCase& c, DType dtype) {
  return dtype == kFloat64 ? c.logdet_tol : Float32Tolerances(c).logdet;
}

// max(worst, e) with NaN as +inf, so a NaN error can never pass a check.
double Worse(double worst, double e) {
  return std::isnan(e) ? INFINITY : std::max(worst, e);
}

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = Worse(m, std::fabs(a[i] - b[i]));
  return m;
}

// The error of a against the reference b: absolute in float64 (the case's
// own tolerances), relative to 1 + |b| in float32 (Float32Tolerances).
double Err(double a, double b, DType dtype) {
  return dtype == kFloat64 ? std::fabs(a - b) : Float32Err(a, b);
}
double MaxErr(const Tensor& a, const Tensor& b, DType dtype) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = Worse(m, Err(a[i], b[i], dtype));
  return m;
}

void ExpectFinite(const Tensor& t, const char* what) {
  for (int64_t i = 0; i < t.numel(); ++i)
    ASSERT_TRUE(std::isfinite(t[i])) << what << "[" << i << "] = " << t[i];
}

// Checks logdet against the brute-force Jacobian of the batch map x -> f(x).
// Small batches (N*D <= 512) use the full [N*D, N*D] Jacobian: its off-
// diagonal D x D blocks must be zero (samples are treated independently) and
// each diagonal block's log|det| must equal logdet[i]. Larger ones use the
// per-sample BatchJacobian (D VJPs) and check independence by running the
// first sample alone.
void CheckAgainstJacobian(const Flow& flow, bool inverse, const Tensor& x,
                          const Tensor& context, double tol,
                          double independence_tol) {
  const char* dir = inverse ? "inverse" : "forward";
  auto f = [&](const Tensor& in, const Tensor& ctx) {
    return inverse ? flow.Inverse(in, ctx) : flow.Forward(in, ctx);
  };
  TapeScope scope;
  const int64_t n = x.dim(0), d = x.numel() / n;
  FlowResult batch = f(x, context);
  Tensor logdet = batch.logdet.Detach();
  ASSERT_EQ(logdet.shape(), Shape({n})) << dir << " logdet shape";
  std::vector<double> jac;  // [N, D, D] diagonal blocks
  if (n * d <= 512) {
    Tensor full = Jacobian(
        [&](const Tensor& flat) {
          return Reshape(f(Reshape(flat, x.shape().dims()), context).value,
                         {n * d});
        },
        Reshape(x, {n * d}));
    const std::vector<double> j = full.ToVector();
    jac.resize(n * d * d);
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b < n; ++b)
        for (int64_t r = 0; r < d; ++r)
          for (int64_t k = 0; k < d; ++k) {
            const double v = j[(a * d + r) * (n * d) + b * d + k];
            if (a == b)
              jac[(a * d + r) * d + k] = v;
            else
              ASSERT_EQ(v, 0.0) << dir << ": output of sample " << a
                                << " depends on input of sample " << b;
          }
  } else {
    Tensor bj = BatchJacobian(
        [&](const Tensor& flat) {
          return Reshape(f(Reshape(flat, x.shape().dims()), context).value,
                         {n, d});
        },
        Reshape(x, {n, d}));
    jac = bj.ToVector();
    FlowResult first =
        f(Narrow(x, 0, 0, 1),
          context.defined() ? Narrow(context, 0, 0, 1) : Tensor());
    for (int64_t k = 0; k < d; ++k)
      ASSERT_NEAR(first.value[k], batch.value[k], independence_tol)
          << dir << ": sample 0 alone differs from sample 0 in the batch";
  }
  for (int64_t a = 0; a < n; ++a) {
    const double brute = LogAbsDetOf(jac.data() + a * d * d, d);
    EXPECT_LT(Err(logdet[a], brute, x.dtype()), tol)
        << dir << " logdet of sample " << a << ": " << logdet[a]
        << ", brute force " << brute;
  }
}

// Checks d(loss)/d(parameter) of every parameter tensor of `m` against
// central differences (in place) on an evenly spread subset of at most
// c.max_grad_entries entries, and that every tensor gets a nonzero gradient.
void CheckParameterGradients(const FlowCase& c, const nn::Module& m,
                             const std::function<Tensor()>& loss,
                             const char* what) {
  std::vector<std::pair<std::string, Tensor>> params = m.NamedParameters();
  {
    TapeScope scope;
    for (auto& np : params) np.second.ZeroGrad();
    Backward(loss());
  }
  int64_t total = 0;
  for (auto& [name, p] : params) {
    total += p.numel();
    Tensor g = p.grad();
    double norm = 0;
    for (int64_t i = 0; g.defined() && i < g.numel(); ++i)
      norm += std::fabs(g[i]);
    EXPECT_GT(norm, 0.0) << "parameter " << name << " does not affect the "
                         << what;
  }
  const int64_t stride = std::max<int64_t>(
      1, (total + c.max_grad_entries - 1) / c.max_grad_entries);
  const double h = 1e-6;
  auto value = [&] {
    NoGradScope no_grad;
    return loss().item();
  };
  int64_t flat = 0;
  double worst = 0;
  std::string worst_at;
  for (auto& [name, p] : params) {
    Tensor g = p.grad();
    for (int64_t i = 0; i < p.numel(); ++i, ++flat) {
      if (flat % stride != 0) continue;
      double* v = p.mutable_data<double>();
      const double old = v[i];
      v[i] = old + h;
      const double fp = value();
      v[i] = old - h;
      const double fm = value();
      v[i] = old;
      const double num = (fp - fm) / (2 * h);
      const double ana = g.defined() ? g[i] : 0.0;
      const double err = std::fabs(ana - num) / std::max(1.0, std::fabs(num));
      if (!(err <= worst)) {  // NaN counts as worse than anything
        worst = Worse(worst, err);
        worst_at = name + "[" + std::to_string(i) + "]: analytic " +
                   std::to_string(ana) + " numeric " + std::to_string(num);
      }
    }
  }
  EXPECT_LT(worst, c.grad_tol) << what << " gradient, worst at " << worst_at;
}

std::vector<Tensor> Inputs(const Tensor& x, const Tensor& context) {
  if (!context.defined()) return {x};
  return {x, context};
}

// The gradient of f w.r.t. `inputs` against central differences
// (tests/gradcheck.h), after checking that f and its gradient are finite.
void CheckInputGradients(const ScalarFn& f, const std::vector<Tensor>& inputs,
                         double tol, const char* what) {
  {
    TapeScope scope;
    std::vector<Tensor> ps;
    for (const Tensor& t : inputs) {
      ps.push_back(t.Detach());
      ps.back().set_requires_grad(true);
    }
    Tensor y = f(ps);
    ASSERT_TRUE(std::isfinite(y.item())) << what << " loss = " << y.item();
    for (const Tensor& g : Grad({y}, ps)) ExpectFinite(g, what);
  }
  EXPECT_LT(GradientError(f, inputs), tol)
      << what << " gradient w.r.t. the inputs (x or z, and context)";
}

}  // namespace

void CheckRoundTrip(const FlowCase& c, DType dtype) {
  Instance s = Make(c, 11, dtype);
  const double tol = ValueTol(c, dtype);
  NoGradScope no_grad;
  FlowResult fz = s.flow->Forward(s.x, s.context);
  ASSERT_EQ(fz.value.shape(), s.x.shape());
  ASSERT_EQ(fz.value.dtype(), dtype);
  EXPECT_TRUE(fz.status.ok()) << fz.status;
  ExpectFinite(fz.value, "forward z");
  FlowResult fx = s.flow->Inverse(fz.value, s.context);
  EXPECT_TRUE(fx.status.ok()) << fx.status;
  ExpectFinite(fx.value, "inverse(forward(x))");
  EXPECT_LT(MaxErr(fx.value, s.x, dtype), tol) << "inverse(forward(x))";
  FlowResult gx = s.flow->Inverse(s.z, s.context);
  EXPECT_TRUE(gx.status.ok()) << gx.status;
  ExpectFinite(gx.value, "inverse x");
  FlowResult gz = s.flow->Forward(gx.value, s.context);
  ExpectFinite(gz.value, "forward(inverse(z))");
  EXPECT_LT(MaxErr(gz.value, s.z, dtype), tol) << "forward(inverse(z))";
}

void CheckLogdetIsJacobian(const FlowCase& c, DType dtype) {
  Instance s = Make(c, 12, dtype);
  const double tol = LogdetTol(c, dtype);
  const double independence = dtype == kFloat64 ? 1e-12 : ValueTol(c, dtype);
  CheckAgainstJacobian(*s.flow, /*inverse=*/false, s.x, s.context, tol,
                       independence);
  CheckAgainstJacobian(*s.flow, /*inverse=*/true, s.z, s.context, tol,
                       independence);
}

void CheckLogdetsCancel(const FlowCase& c, DType dtype) {
  Instance s = Make(c, 13, dtype);
  const double tol = LogdetTol(c, dtype);
  NoGradScope no_grad;
  FlowResult fz = s.flow->Forward(s.x, s.context);
  FlowResult fx = s.flow->Inverse(fz.value, s.context);
  ASSERT_EQ(fz.logdet.shape(), Shape({c.batch}));
  ASSERT_EQ(fx.logdet.shape(), Shape({c.batch}));
  for (int64_t i = 0; i < c.batch; ++i)
    EXPECT_LT(Err(-fx.logdet[i], fz.logdet[i], dtype), tol)
        << "sample " << i << ": forward " << fz.logdet[i] << ", inverse "
        << fx.logdet[i];
}

void CheckDensityIntegratesToOne(const FlowCase& c, DType dtype) {
  const int64_t d = c.event_shape.numel();
  if (d > 2) return;  // quadrature only in 1-D and 2-D
  Instance s = Make(c, 14, dtype);
  flows::FlowModel model(flows::StandardNormal::Create(c.event_shape).value(),
                         s.flow);
  model.To(dtype);
  const int m =
      c.quadrature_points > 0 ? c.quadrature_points : (d == 1 ? 4000 : 400);
  const double l = c.quadrature_bound, h = 2 * l / m;
  const int64_t n = d == 1 ? m : int64_t{m} * m;
  NoGradScope no_grad;
  std::vector<double> grid(n * d);
  for (int64_t i = 0; i < n; ++i) {
    grid[i * d] = -l + h * (i % m + 0.5);
    if (d == 2) grid[i * d + 1] = -l + h * (i / m + 0.5);
  }
  Tensor x = Tensor::FromVector(BatchShape(c, n), grid, dtype);
  Tensor ctx;  // one context for the whole grid: p(x | c) integrates to 1
  if (c.context_dim > 0) {
    Tensor row = Reshape(Narrow(s.context, 0, 0, 1), {1, c.context_dim});
    ctx = BroadcastTo(row, Shape({n, c.context_dim}));
  }
  Tensor lp = model.LogProb(x, ctx);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += std::exp(lp[i]);
  const double tol =
      dtype == kFloat64 ? c.integral_tol : Float32Tolerances(c).integral;
  EXPECT_NEAR(total * std::pow(h, d), 1.0, tol);
}

void CheckFloat32AgreesWithFloat64(const FlowCase& c) {
  Instance a = Make(c, 21, kFloat32);
  Instance b = Make(c, 21, kFloat64, /*float32_factory=*/true);
  b.flow->To(kFloat32);  // the float32 parameters, held in float64
  b.flow->To(kFloat64);
  auto wide = [](const Tensor& t) {
    return t.defined() ? Cast(t, kFloat64).Detach() : t;
  };
  const Float32Tolerances tol(c);
  NoGradScope no_grad;
  for (bool inverse : {false, true}) {
    const char* dir = inverse ? "inverse" : "forward";
    const Tensor& in = inverse ? a.z : a.x;
    FlowResult r32 = inverse ? a.flow->Inverse(in, a.context)
                             : a.flow->Forward(in, a.context);
    FlowResult r64 = inverse ? b.flow->Inverse(wide(in), wide(a.context))
                             : b.flow->Forward(wide(in), wide(a.context));
    ASSERT_EQ(r32.value.dtype(), kFloat32) << dir;
    ASSERT_EQ(r32.logdet.dtype(), kFloat32) << dir;
    EXPECT_LT(MaxErr(r32.value, r64.value, kFloat32), tol.value)
        << dir << " values, float32 vs float64";
    EXPECT_LT(MaxErr(r32.logdet, r64.logdet, kFloat32), tol.logdet)
        << dir << " log-dets, float32 vs float64";
  }
}

void CheckSamplesFiniteAfterTraining(const FlowCase& c, DType dtype) {
  constexpr int kSteps = 20;
  constexpr int64_t kRows = 64, kBatch = 32, kSamples = 256;
  Instance s = Make(c, 23, dtype);
  flows::FlowModel model(flows::StandardNormal::Create(c.event_shape).value(),
                         s.flow);
  model.To(dtype);
  Rng rng(24);
  auto context = [&](int64_t n) {
    return c.context_dim > 0 ? Tensor::Randn({n, c.context_dim}, rng, dtype)
                             : Tensor();
  };
  training::TrainData data;
  data.train =
      Cast(Tensor::Randn(BatchShape(c, kRows), rng) * c.input_scale, dtype)
          .Detach();
  data.train_context = context(kRows);
  // The library's guarded loop: a step whose loss or gradient is not finite
  // stops training and restores the whole state (parameters, buffers,
  // optimizer) of the last finite step (guard_every = 1); the run must end
  // with a model that samples and scores.
  nn::AdamOptions adam_options;
  adam_options.lr = c.train_lr;
  auto opt = nn::Adam::Create(model, adam_options).value();
  training::TrainOptions o;
  o.batch_size = kBatch;
  o.max_steps = kSteps;
  o.log_every = 0;
  o.guard_every = 1;
  o.seed = 25;
  absl::StatusOr<training::TrainResult> r = training::TrainNllOutcome(
      model, training::ModelNll(model), *opt, data, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->model_status.ok())
      << "after " << r->steps << " steps: " << r->message;
  NoGradScope no_grad;
  Tensor z = model.base()->Sample(kSamples, rng);
  FlowResult inv = model.flow()->Inverse(z, context(kSamples), &rng);
  EXPECT_TRUE(inv.status.ok())
      << "after " << r->steps << " steps: " << inv.status;
  ExpectFinite(inv.value, "sample");
  ExpectFinite(inv.logdet, "sample log-det");
  Tensor xs = model.Sample(kSamples, rng, context(kSamples));
  ExpectFinite(xs, "Sample()");
}

void CheckGradients(const FlowCase& c) {
  Instance s = Make(c, 15);
  flows::FlowModel model(flows::StandardNormal::Create(c.event_shape).value(),
                         s.flow);
  CheckParameterGradients(
      c, *s.flow, [&] { return model.Nll(s.x, s.context); }, "NLL");
  CheckInputGradients(
      [&](const std::vector<Tensor>& in) {
        return model.Nll(in[0], in.size() > 1 ? in[1] : Tensor());
      },
      Inputs(s.x, s.context), c.grad_tol, "NLL");
}

void CheckInverseGradients(const FlowCase& c) {
  Instance s = Make(c, 17);
  Rng rng(18);
  Tensor r = Tensor::Randn(s.z.shape(), rng);
  auto loss = [&](const Tensor& z, const Tensor& context) {
    FlowResult g = s.flow->Inverse(z, context);
    return Mean(Sum(Reshape(g.value * r, {c.batch, -1}), 1) + g.logdet);
  };
  CheckParameterGradients(
      c, *s.flow, [&] { return loss(s.z, s.context); }, "inverse");
  CheckInputGradients(
      [&](const std::vector<Tensor>& in) {
        return loss(in[0], in.size() > 1 ? in[1] : Tensor());
      },
      Inputs(s.z, s.context), c.grad_tol, "inverse");
}

void CheckHessianVectorProducts(const FlowCase& c) {
  Instance s = Make(c, 19);
  flows::FlowModel model(flows::StandardNormal::Create(c.event_shape).value(),
                         s.flow);
  {
    NoGradScope no_grad;  // HessianVectorError ignores NaN
    const double nll = model.Nll(s.x, s.context).item();
    ASSERT_TRUE(std::isfinite(nll)) << "NLL = " << nll;
  }
  double err = HessianVectorError(
      [&](const std::vector<Tensor>& in) {
        return model.Nll(in[0], in.size() > 1 ? in[1] : Tensor());
      },
      Inputs(s.x, s.context));
  EXPECT_LT(err, c.hvp_tol) << "NLL Hessian-vector product";
}

void CheckContextMatters(const FlowCase& c) {
  if (c.context_dim == 0) return;
  Instance s = Make(c, 16);
  NoGradScope no_grad;
  Tensor other = (s.context + 1.0).Detach();
  EXPECT_GT(MaxAbsDiff(s.flow->Forward(s.x, s.context).value,
                       s.flow->Forward(s.x, other).value),
            1e-6)
      << "the context does not reach the forward direction";
  EXPECT_GT(MaxAbsDiff(s.flow->Inverse(s.z, s.context).value,
                       s.flow->Inverse(s.z, other).value),
            1e-6)
      << "the context does not reach the inverse direction";
}

// ---- the parameterised suite ----
TEST_P(FlowHarness, RoundTrip) { CheckRoundTrip(GetParam()); }
TEST_P(FlowHarness, LogdetIsJacobian) { CheckLogdetIsJacobian(GetParam()); }
TEST_P(FlowHarness, LogdetsCancel) { CheckLogdetsCancel(GetParam()); }
TEST_P(FlowHarness, DensityIntegratesToOne) {
  if (GetParam().event_shape.numel() > 2)
    GTEST_SKIP() << "quadrature only in 1-D and 2-D";
  CheckDensityIntegratesToOne(GetParam());
}
#define FLOWTAPE_SKIP_IF_FLOAT64_ONLY()                             \
  if (!GetParam().float64_only.empty())                             \
    GTEST_SKIP() << "float64 only: " << GetParam().float64_only;    \
  SCOPED_TRACE(GetParam().float32_make == nullptr                   \
                   ? std::string("float32: the case's own factory") \
                   : "float32 factory: " + GetParam().float32_factory_reason)

TEST_P(FlowHarness, RoundTripFloat32) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  CheckRoundTrip(GetParam(), kFloat32);
}
TEST_P(FlowHarness, LogdetIsJacobianFloat32) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  CheckLogdetIsJacobian(GetParam(), kFloat32);
}
TEST_P(FlowHarness, LogdetsCancelFloat32) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  CheckLogdetsCancel(GetParam(), kFloat32);
}
TEST_P(FlowHarness, DensityIntegratesToOneFloat32) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  if (GetParam().event_shape.numel() > 2)
    GTEST_SKIP() << "quadrature only in 1-D and 2-D";
  CheckDensityIntegratesToOne(GetParam(), kFloat32);
}
TEST_P(FlowHarness, Float32AgreesWithFloat64) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  CheckFloat32AgreesWithFloat64(GetParam());
}
TEST_P(FlowHarness, SamplesFiniteAfterTraining) {
  CheckSamplesFiniteAfterTraining(GetParam());
}
TEST_P(FlowHarness, SamplesFiniteAfterTrainingFloat32) {
  FLOWTAPE_SKIP_IF_FLOAT64_ONLY();
  CheckSamplesFiniteAfterTraining(GetParam(), kFloat32);
}
TEST_P(FlowHarness, GradientsMatchFiniteDifferences) {
  CheckGradients(GetParam());
}
TEST_P(FlowHarness, InverseGradientsMatchFiniteDifferences) {
  CheckInverseGradients(GetParam());
}
TEST_P(FlowHarness, NllHessianVectorProductsMatchFiniteDifferences) {
  if (!GetParam().second_order) GTEST_SKIP() << "first-order-only flow";
  CheckHessianVectorProducts(GetParam());
}
TEST_P(FlowHarness, ContextMatters) {
  if (GetParam().context_dim == 0) GTEST_SKIP() << "unconditional";
  CheckContextMatters(GetParam());
}

}  // namespace flowtape::testing

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FlowHarness);
