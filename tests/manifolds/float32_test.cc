// The manifold flows and densities of manifolds/ in float32: each case is
// built in float64 and converted with Module::To(kFloat32); a twin built the
// same way and rounded (To(kFloat32) then To(kFloat64)) is the float64
// reference at the same parameters. At float32-rounded inputs the float32
// model agrees with the reference (values, log R, log-densities, parameter
// gradients); round trips, log R cancellation and manifold membership hold
// in float32; samples come back in float32 on the manifold; the poles of the
// cylindrical flow stay finite; a few Adam steps in float32 stay finite and
// lower the NLL. The float64 mathematics (closed forms, quadrature) is
// checked by the other tests of this package.
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
#include "manifolds/dirichlet.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flows.h"
#include "manifolds/volume_ratio.h"
#include "nn/optim.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::AffineOptions;
using testing::CalibrationOptions;
using testing::CouplingOptions;
using testing::RandomInvertible;
using testing::RandomVector;

// The float32 tolerances, in one place. eps = 2^-23 is float32's machine
// epsilon; errors are relative, |a - b| / (1 + |b|). For ambient dimension
// n:
//   value  = 2^7 eps sqrt(n)  (~1.5e-5 sqrt(n)): an entry goes through
//            tens of roundings (a matrix product, a norm, a softmax; the
//            neural flow's two MLPs), and an n-dimensional mix adds n
//            independent ones, which grow like sqrt(n);
//   logdet = 2^7 eps n        (~1.5e-5 n): log R and log p sum n
//            log-terms (log|det M|, n log||Mx||, sum log q_i - log p_i);
//   grad   = 10 logdet: a backward pass repeats the forward's roundings
//            through the transposed ops.
// Measured worst over the cases below: values 3 eps, log R and log p
// 4 eps n (vMF at kappa = 20, the Create()-made affine flow's round trip),
// gradients below the log R bound: 2^7 leaves a margin of 30x.
struct Float32Tol {
  static constexpr double kEps = 1.0 / (1 << 23);
  double value, logdet, grad;
  explicit Float32Tol(int64_t n) {
    const double base = 128 * kEps;
    value = base * std::sqrt(static_cast<double>(n));
    logdet = base * n;
    grad = 10 * logdet;
  }
};

double RelErr(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / (1.0 + std::abs(b[i])));
  return worst;
}

// Converts `m` to float32 and returns it; `twin` (built identically) becomes
// the float64 model with the same, float32-rounded, parameters.
template <typename M>
std::shared_ptr<M> ToFloat32(std::shared_ptr<M> m, nn::Module& twin) {
  m->To(kFloat32);
  twin.To(kFloat32);
  twin.To(kFloat64);
  return m;
}

void Perturb(const nn::Module& m, Rng& rng, double scale) {
  for (Tensor p : m.Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += scale * rng.Normal();
}

struct FlowCase {
  std::string name;
  Manifold manifold;
  // Builds the flow in float64 from a fixed seed (called twice).
  std::function<std::shared_ptr<flows::Flow>()> make;
};

std::vector<FlowCase> FlowCases() {
  std::vector<FlowCase> cases;
  for (int64_t n : {3, 5}) {
    const Manifold s = Manifold::Sphere(n), d = Manifold::Simplex(n);
    const std::string tag = std::to_string(n);
    cases.push_back(
        {"affine" + tag, s, [n] {
           Rng rng(100 + n);
           return NormalizedAffine::Create(AffineOptions(n, 0.5), rng).value();
         }});
    cases.push_back({"translation" + tag, s, [n] {
                       Rng rng(110 + n);
                       return NormalizedTranslation::Create(
                                  AffineOptions(n, 0.5), rng)
                           .value();
                     }});
    cases.push_back(
        {"linear" + tag, s, [n] {
           Rng rng(120 + n);
           return NormalizedLinear::Create(AffineOptions(n, 0.5), rng).value();
         }});
    // Create() factors M with pivoting: a permutation and signs in buffers.
    cases.push_back({"affine_create" + tag, s, [n] {
                       Rng rng(130 + n);
                       Eigen::MatrixXd m = RandomInvertible(n, rng);
                       Eigen::VectorXd b = RandomVector(n, rng).normalized();
                       return std::shared_ptr<flows::Flow>(
                           *NormalizedAffine::Create(m, 0.7 * m * b));
                     }});
    cases.push_back({"fcal" + tag, d, [n] {
                       Rng rng(140 + n);
                       std::vector<double> c(n);
                       for (double& v : c) v = rng.Normal();
                       return std::shared_ptr<flows::Flow>(
                           *SimplexCalibration::Create(-0.6, c));
                     }});
    cases.push_back({"temperature" + tag, d, [n] {
                       return std::shared_ptr<flows::Flow>(
                           *SimplexCalibration::Create(
                               1.7, std::vector<double>(n, 0.0), true));
                     }});
    cases.push_back({"gcal" + tag, d, [n] {
                       Rng rng(150 + n);
                       return GeneralizedCalibration::Create(
                                  CalibrationOptions(n, 0.4), rng)
                           .value();
                     }});
  }
  cases.push_back({"cylindrical", Manifold::Sphere(3), [] {
                     Rng rng(160);
                     auto f = CylindricalCouplingFlow::Create(
                                  CouplingOptions(4, 16), rng)
                                  .value();
                     Perturb(*f, rng, 0.3);
                     return f;
                   }});
  return cases;
}

// Points inside the manifold (simplex rows away from the boundary).
Tensor Points(const Manifold& m, int64_t num, Rng& rng) {
  Tensor x = m.SampleUniform(num, rng);
  if (m.kind() == ManifoldKind::kSimplex) x = m.Project(x + 0.05);
  return Cast(x, kFloat32);
}

TEST(Float32, FlowsAgreeWithFloat64) {
  for (const FlowCase& c : FlowCases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<flows::Flow> f64 = c.make();
    std::shared_ptr<flows::Flow> f32 = ToFloat32(c.make(), *f64);
    ASSERT_EQ(f32->dtype(), kFloat32);
    const Float32Tol tol(c.manifold.ambient());
    Rng rng(1);
    Tensor x32 = Points(c.manifold, 32, rng), x64 = Cast(x32, kFloat64);
    TapeScope scope;
    NoGradScope no_grad;
    flows::FlowResult a = f32->Forward(x32), b = f64->Forward(x64);
    ASSERT_EQ(a.value.dtype(), kFloat32);
    ASSERT_EQ(a.logdet.dtype(), kFloat32);
    EXPECT_LT(RelErr(a.value, b.value), tol.value);
    EXPECT_LT(RelErr(a.logdet, b.logdet), tol.logdet);
    flows::FlowResult ai = f32->Inverse(x32), bi = f64->Inverse(x64);
    ASSERT_EQ(ai.value.dtype(), kFloat32);
    EXPECT_LT(RelErr(ai.value, bi.value), tol.value);
    EXPECT_LT(RelErr(ai.logdet, bi.logdet), tol.logdet);
  }
}

TEST(Float32, FlowsRoundTripOnTheManifold) {
  for (const FlowCase& c : FlowCases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<flows::Flow> f = c.make();
    f->To(kFloat32);
    const Float32Tol tol(c.manifold.ambient());
    Rng rng(2);
    Tensor x = Points(c.manifold, 32, rng);
    TapeScope scope;
    NoGradScope no_grad;
    flows::FlowResult fwd = f->Forward(x);
    EXPECT_TRUE(c.manifold.ContainsAll(fwd.value, tol.value));
    flows::FlowResult inv = f->Inverse(fwd.value);
    EXPECT_LT(RelErr(inv.value, x), tol.value);
    EXPECT_LT(RelErr(inv.logdet, -fwd.logdet), tol.logdet);
  }
}

TEST(Float32, ParameterGradientsAgreeWithFloat64) {
  for (const FlowCase& c : FlowCases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<flows::Flow> f64 = c.make();
    std::shared_ptr<flows::Flow> f32 = ToFloat32(c.make(), *f64);
    const Float32Tol tol(c.manifold.ambient());
    Rng rng(3);
    Tensor x32 = Points(c.manifold, 16, rng);
    auto grads = [](const flows::Flow& f, const Tensor& x) {
      TapeScope scope;
      std::vector<Tensor> g = Grad({Mean(f.Forward(x).logdet)}, f.Parameters());
      for (Tensor& t : g) t = Cast(t, kFloat64).Detach();
      return g;
    };
    std::vector<Tensor> g32 = grads(*f32, x32),
                        g64 = grads(*f64, Cast(x32, kFloat64));
    ASSERT_EQ(g32.size(), g64.size());
    for (size_t i = 0; i < g32.size(); ++i)
      EXPECT_LT(RelErr(g32[i], g64[i]), tol.grad) << "parameter " << i;
  }
}

// The generic volume ratio (autodiff Jacobian, Gram form, Cholesky) in
// float32 against its float64 value and the closed form.
TEST(Float32, GenericVolumeRatioMatchesClosedForm) {
  for (int64_t n : {3, 5}) {
    auto make = [n] {
      Rng rng(170 + n);
      return NormalizedAffine::Create(AffineOptions(n, 0.3), rng).value();
    };
    std::shared_ptr<NormalizedAffine> f64 = make();
    std::shared_ptr<NormalizedAffine> f32 = ToFloat32(make(), *f64);
    const Manifold s = Manifold::Sphere(n);
    const Float32Tol tol(n);
    Rng rng(4);
    Tensor x32 = Points(s, 8, rng), x64 = Cast(x32, kFloat64);
    TapeScope scope;
    Tensor g32 = LogVolumeRatio(
        s, [&](const Tensor& v) { return f32->Forward(v).value; }, x32);
    Tensor g64 = LogVolumeRatio(
        s, [&](const Tensor& v) { return f64->Forward(v).value; }, x64);
    ASSERT_EQ(g32.dtype(), kFloat32);
    NoGradScope no_grad;
    EXPECT_LT(RelErr(g32, f32->Forward(x32).logdet), tol.logdet);
    EXPECT_LT(RelErr(g32, g64), tol.logdet);
  }
}

// Near and at the poles the cylindrical flow's regulariser must be a normal
// float32 (1e-60 underflows to 0 there and gives 0/0).
TEST(Float32, CylindricalFlowIsFiniteAtThePoles) {
  Rng rng(5);
  auto f = CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng).value();
  Perturb(*f, rng, 0.3);
  f->To(kFloat32);
  for (double pole : {1.0, -1.0}) {
    std::vector<double> rows;
    for (double a : {1e-3, 1e-8, 1e-20, 0.0})
      rows.insert(rows.end(),
                  {std::sin(a) * std::cos(0.7), std::sin(a) * std::sin(0.7),
                   pole * std::cos(a)});
    Tensor x = Tensor::FromVector({4, 3}, rows, kFloat32);
    TapeScope scope;
    flows::FlowResult fwd = f->Forward(x);
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_TRUE(std::isfinite(fwd.logdet[i])) << i;
      for (int64_t j = 0; j < 3; ++j)
        EXPECT_TRUE(std::isfinite(fwd.value[3 * i + j])) << i;
    }
    EXPECT_NEAR(fwd.logdet[3], std::log(0.05), 1e-4);  // the pole itself
    std::vector<Tensor> g = Grad({Sum(fwd.logdet)}, f->Parameters());
    for (const Tensor& t : g)
      for (int64_t j = 0; j < t.numel(); ++j) ASSERT_TRUE(std::isfinite(t[j]));
  }
}

struct DensityCase {
  std::string name;
  std::function<std::shared_ptr<ManifoldDensity>()> make;
};

std::vector<DensityCase> DensityCases() {
  auto chain = [](int64_t n, int layers, uint64_t seed) {
    Rng rng(seed);
    std::vector<std::shared_ptr<flows::Flow>> flows;
    for (int k = 0; k < layers; ++k)
      flows.push_back(
          NormalizedAffine::Create(AffineOptions(n, 0.4), rng).value());
    return std::make_shared<ManifoldFlowModel>(UniformSphere::Create(n).value(),
                                               flows);
  };
  return {
      {"uniform", [] { return UniformSphere::Create(4).value(); }},
      {"acg",
       [] {
         Rng rng(200);
         Eigen::MatrixXd m = RandomInvertible(4, rng);
         return std::shared_ptr<ManifoldDensity>(
             *AngularCentralGaussian::Create(m * m.transpose()));
       }},
      {"vmf",
       [] {
         return std::shared_ptr<ManifoldDensity>(
             *VonMisesFisher::Create(Eigen::Vector3d(0.6, 0.0, 0.8), 20.0));
       }},
      {"dirichlet",
       [] {
         return std::shared_ptr<ManifoldDensity>(
             *Dirichlet::Create({0.7, 2.0, 3.5}));
       }},
      {"chain", [chain] { return chain(3, 6, 201); }},
      {"mixture",
       [chain] {
         return FlowMixture::Create(
                    std::vector<std::shared_ptr<ManifoldDensity>>{
                        chain(3, 2, 202), chain(3, 3, 203)})
             .value();
       }},
      {"calibrated",
       [] {
         Rng rng(204);
         std::vector<std::shared_ptr<flows::Flow>> flows = {
             GeneralizedCalibration::Create(CalibrationOptions(3, 0.3), rng)
                 .value()};
         return std::make_shared<ManifoldFlowModel>(
             std::shared_ptr<ManifoldDensity>(*Dirichlet::Create({2, 3, 4})),
             flows);
       }},
      {"neural",
       [] {
         Rng rng(205);
         auto nf = CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng)
                       .value();
         Perturb(*nf, rng, 0.3);
         std::vector<std::shared_ptr<flows::Flow>> flows = {
             nf, NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value()};
         return std::make_shared<ManifoldFlowModel>(
             UniformSphere::Create(3).value(), flows);
       }},
  };
}

TEST(Float32, DensitiesAgreeWithFloat64AndSampleInFloat32) {
  for (const DensityCase& c : DensityCases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<ManifoldDensity> d64 = c.make();
    std::shared_ptr<ManifoldDensity> d32 = ToFloat32(c.make(), *d64);
    const Manifold& m = d64->manifold();
    const Float32Tol tol(m.ambient());
    Rng rng(6);
    Tensor x32 = Points(m, 64, rng);
    TapeScope scope;
    NoGradScope no_grad;
    Tensor lp32 = d32->LogProb(x32);
    ASSERT_EQ(lp32.dtype(), kFloat32);
    EXPECT_LT(RelErr(lp32, d64->LogProb(Cast(x32, kFloat64))), tol.logdet);
    Tensor s = d32->Sample(50, rng);
    // A density without tensors (uniform, Dirichlet) samples in float64;
    // every density with a dtype samples in it.
    if (!d32->Parameters().empty() || !d32->NamedBuffers().empty()) {
      EXPECT_EQ(s.dtype(), kFloat32);
    }
    EXPECT_TRUE(m.ContainsAll(s, tol.value));
  }
}

// Ten Adam steps of maximum likelihood on a float32 mixture of affine chains
// (the earth benchmark's model) stay finite and lower the NLL.
TEST(Float32, TrainingLowersTheNll) {
  auto make = [] {
    Rng rng(300);
    std::vector<std::shared_ptr<ManifoldDensity>> parts;
    for (int j = 0; j < 3; ++j)
      parts.push_back(std::make_shared<ManifoldFlowModel>(
          UniformSphere::Create(3).value(),
          std::vector<std::shared_ptr<flows::Flow>>{
              NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value(),
              NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value()}));
    return FlowMixture::Create(parts).value();
  };
  auto model = make();
  model->To(kFloat32);
  Rng rng(7);
  Tensor data =
      Cast((*VonMisesFisher::Create(Eigen::Vector3d(0, 0.6, 0.8), 8.0))
               ->Sample(256, rng),
           kFloat32);
  nn::AdamOptions opt;
  opt.lr = 0.05;
  auto adam = nn::Adam::Create(*model, opt).value();
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    TapeScope scope;
    Tensor nll = -Mean(model->LogProb(data));
    ASSERT_EQ(nll.dtype(), kFloat32);
    ASSERT_TRUE(std::isfinite(nll.item())) << step;
    (step == 0 ? first : last) = nll.item();
    model->ZeroGrad();
    Backward(nll);
    adam->Step();
  }
  EXPECT_LT(last, first - 0.1);
}

}  // namespace
}  // namespace flowtape::manifolds
