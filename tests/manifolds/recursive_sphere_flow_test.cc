// RecursiveSphereFlow (recursive_sphere_flow.h) with spline, Moebius and
// Moebius-mixture azimuth maps: round trips with outputs on the sphere, the
// closed-form log-det equals the generic volume ratio (volume_ratio.h:
// autodiff Jacobian, Gram form; also for two stacked layers at the size
// benchmarks/earth.cc trains), the model density integrates to 1 over S^2
// (quadrature in (z, phi), dA = dz dphi), gradients w.r.t. points and
// parameters equal finite differences, and so do Hessian-vector products
// jointly over points and parameters, float32 agrees with float64, and
// 60 Adam steps from the uniform density reach within 0.15 nats of a von
// Mises-Fisher sample's own NLL.
#include "manifolds/recursive_sphere_flow.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/angle.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/volume_ratio.h"
#include "nn/optim.h"
#include "tests/gradcheck.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {

std::vector<RecursiveSphereFlowOptions> Cases() {
  RecursiveSphereFlowOptions spline;
  spline.hidden = {8};
  spline.height_bins = 6;
  spline.azimuth.bins = 6;
  RecursiveSphereFlowOptions mobius = spline;
  mobius.azimuth.kind = CircleMapKind::kMobius;
  RecursiveSphereFlowOptions mixture = mobius;
  mixture.azimuth.components = 3;
  return {spline, mobius, mixture};
}

std::shared_ptr<RecursiveSphereFlow> Make(const RecursiveSphereFlowOptions& o,
                                          Rng& rng, double noise = 0.5) {
  auto f = *RecursiveSphereFlow::Create(o, rng);
  for (Tensor& p : f->Parameters()) {
    double* d = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] += noise * rng.Normal();
  }
  return f;
}

TEST(RecursiveSphereFlow, CreateRejectsBadOptions) {
  Rng rng(1);
  RecursiveSphereFlowOptions o;
  EXPECT_TRUE(RecursiveSphereFlow::Create(o, rng).ok());
  o.height_bins = 1;
  EXPECT_FALSE(RecursiveSphereFlow::Create(o, rng).ok());
  o.height_bins = 4;
  o.hidden = {0};
  EXPECT_FALSE(RecursiveSphereFlow::Create(o, rng).ok());
  o.hidden = {4};
  o.azimuth.kind = CircleMapKind::kMobius;
  o.azimuth.components = 0;
  EXPECT_FALSE(RecursiveSphereFlow::Create(o, rng).ok());
}

TEST(RecursiveSphereFlow, RoundTripsOnTheSphere) {
  Rng rng(2);
  Manifold s2 = Manifold::Sphere(3);
  for (const auto& o : Cases()) {
    auto f = Make(o, rng);
    NoGradScope no_grad;
    Tensor x = s2.SampleUniform(300, rng);
    flows::FlowResult fwd = f->Forward(x);
    flows::FlowResult inv = f->Inverse(fwd.value);
    ASSERT_TRUE(fwd.status.ok() && inv.status.ok()) << f->name();
    EXPECT_TRUE(s2.ContainsAll(fwd.value, 1e-12)) << f->name();
    EXPECT_TRUE(s2.ContainsAll(inv.value, 1e-12)) << f->name();
    for (int64_t i = 0; i < 300; ++i) {
      const double cond = std::max(1.0, std::exp(std::abs(fwd.logdet[i])));
      EXPECT_LT((Row(inv.value, i) - Row(x, i)).norm(), 1e-12 * cond)
          << f->name();
      EXPECT_NEAR(inv.logdet[i], -fwd.logdet[i], 1e-10) << f->name();
    }
  }
}

TEST(RecursiveSphereFlow, LogdetIsTheVolumeRatio) {
  Rng rng(3);
  Manifold s2 = Manifold::Sphere(3);
  for (const auto& o : Cases()) {
    auto f = Make(o, rng);
    NoGradScope no_grad;
    Tensor x = s2.SampleUniform(40, rng);
    Tensor ld = f->Forward(x).logdet;
    TensorFn map = [&](const Tensor& v) { return f->Forward(v).value; };
    for (int64_t i = 0; i < 40; ++i)
      EXPECT_NEAR(ld[i], std::log(VolumeRatio(s2, map, Row(x, i))), 1e-9)
          << f->name();
  }
}

// The same at the size benchmarks/earth.cc trains (32 bins, conditioners
// 64-64), where the spline knots crowd: stacked layers with rotations.
TEST(RecursiveSphereFlow, LogdetIsTheVolumeRatioAtTheEarthSize) {
  Rng rng(13);
  Manifold s2 = Manifold::Sphere(3);
  RecursiveSphereFlowOptions o;
  o.height_bins = o.azimuth.bins = 32;
  o.hidden = {64, 64};
  std::vector<std::shared_ptr<flows::Flow>> chain = {Make(o, rng, 0.3),
                                                     Make(o, rng, 0.3)};
  NoGradScope no_grad;
  Tensor x = s2.SampleUniform(40, rng);
  TensorFn map = [&](const Tensor& v) {
    return chain[1]->Forward(chain[0]->Forward(v).value).value;
  };
  Tensor ld = chain[0]->Forward(x).logdet +
              chain[1]->Forward(chain[0]->Forward(x).value).logdet;
  for (int64_t i = 0; i < 40; ++i)
    EXPECT_NEAR(ld[i], std::log(VolumeRatio(s2, map, Row(x, i))), 1e-8);
}

// Midpoint rule in (z, phi) on [-1, 1] x [0, 2 pi) (dA = dz dphi) for the
// uniform base pushed through one layer, with and without the rotation (the
// integrand has kinks along the spline knots: O(h^2), ~1e-5 here).
TEST(RecursiveSphereFlow, DensityIntegratesToOneOnTheSphere) {
  Rng rng(4);
  const int64_t nz = 400, nphi = 400;
  std::vector<double> pts;
  for (int64_t i = 0; i < nz; ++i)
    for (int64_t j = 0; j < nphi; ++j) {
      const double z = -1.0 + 2.0 * (i + 0.5) / nz;
      const double phi = kTwoPi * (j + 0.5) / nphi, r = std::sqrt(1 - z * z);
      pts.insert(pts.end(), {r * std::cos(phi), r * std::sin(phi), z});
    }
  Tensor x = Tensor::FromVector({nz * nphi, 3}, pts);
  for (auto o : Cases()) {
    for (bool rotate : {false, true}) {
      o.rotate = rotate;
      std::vector<std::shared_ptr<flows::Flow>> chain = {Make(o, rng, 0.3)};
      ManifoldFlowModel model(UniformSphere::Create(3).value(), chain);
      NoGradScope no_grad;
      const double mass =
          Sum(Exp(model.LogProb(x))).item() * (2.0 / nz) * (kTwoPi / nphi);
      EXPECT_NEAR(mass, 1.0, 5e-5) << chain[0]->name();
    }
  }
}

TEST(RecursiveSphereFlow, GradientsMatchFiniteDifferences) {
  Rng rng(5);
  for (const auto& o : Cases()) {
    auto f = Make(o, rng);
    Tensor x = Manifold::Sphere(3).SampleUniform(4, rng);
    Tensor r = Tensor::Randn({4, 3}, rng);
    for (bool inverse : {false, true}) {
      auto loss = [&](const std::vector<Tensor>& in) {
        flows::FlowResult res = inverse ? f->Inverse(in[0]) : f->Forward(in[0]);
        return Sum(res.value * r) + Sum(res.logdet);
      };
      const std::string what = f->name() + (inverse ? " inverse" : " forward");
      EXPECT_LT(flowtape::testing::GradientError(loss, {x}), 1e-6) << what;
      EXPECT_LT(testing::ParameterGradientError(*f, [&] { return loss({x}); }),
                1e-6)
          << what;
    }
  }
}

// Second order: the double-backward Hessian-vector product of the same loss
// jointly over the points and every parameter, against central differences
// of its first-order gradient along v (tests/gradcheck.h), both directions.
// The points keep away from the poles of the frames the layer reads and
// writes (|height| <= 0.8 in x and in y Q, Q the rotation): near a pole the
// azimuth moves like 1 / r, the second derivatives like 1 / r^3, and the
// difference step would cross spline knots (where f'' jumps).
TEST(RecursiveSphereFlow, HessianVectorProductsMatchFiniteDifferences) {
  Rng rng(15);
  for (const auto& o : Cases()) {
    auto f = Make(o, rng);
    Tensor q;
    for (const auto& [name, b] : f->NamedBuffers())
      if (name == "rotation") q = b;
    ASSERT_TRUE(q.defined());
    Tensor r = Tensor::Randn({4, 3}, rng);
    for (bool inverse : {false, true}) {
      auto apply = [&](const Tensor& v) {
        return inverse ? f->Inverse(v) : f->Forward(v);
      };
      // The height of a point [1, 3] in the layer's frame: Forward reads x
      // and writes y = c Q' (c = y Q); Inverse reads y Q and writes x.
      auto away_from_poles = [&](const Tensor& p, bool rotated) {
        return std::abs((rotated ? MatMul(p, q) : p)[2]) <= 0.8;
      };
      std::vector<double> kept;
      while (kept.size() < 12) {
        NoGradScope no_grad;
        Tensor p = Manifold::Sphere(3).SampleUniform(1, rng);
        if (away_from_poles(p, inverse) &&
            away_from_poles(apply(p).value, !inverse))
          kept.insert(kept.end(), {p[0], p[1], p[2]});
      }
      Tensor x = Tensor::FromVector({4, 3}, kept);
      auto loss = [&](const std::vector<Tensor>& in) {
        flows::FlowResult res = apply(in[0]);
        return Sum(res.value * r) + Sum(res.logdet);
      };
      EXPECT_LT(flowtape::testing::HessianVectorErrorWithParameters(
                    loss, {x}, f->Parameters()),
                1e-5)
          << f->name() << (inverse ? " inverse" : " forward");
    }
  }
}

TEST(RecursiveSphereFlow, Float32AgreesWithFloat64) {
  Rng rng(6);
  for (const auto& o : Cases()) {
    // Same construction (rotation), same float32-rounded parameters.
    Rng build64(11), build32(11);
    auto f64 = *RecursiveSphereFlow::Create(o, build64);
    auto f32 = *RecursiveSphereFlow::Create(o, build32);
    std::vector<Tensor> p64 = f64->Parameters(), p32 = f32->Parameters();
    for (size_t k = 0; k < p64.size(); ++k) {
      Tensor noisy = p64[k] + Tensor::Randn(p64[k].shape(), rng) * 0.5;
      Tensor rounded = Cast(Cast(noisy, kFloat32), kFloat64);
      for (Tensor* t : {&p64[k], &p32[k]})
        std::copy(rounded.data<double>(),
                  rounded.data<double>() + rounded.numel(),
                  t->mutable_data<double>());
    }
    f32->To(kFloat32);
    NoGradScope no_grad;
    Tensor x32 = Cast(Manifold::Sphere(3).SampleUniform(100, rng), kFloat32);
    Tensor x = Cast(x32, kFloat64);
    for (bool inverse : {false, true}) {
      flows::FlowResult a = inverse ? f32->Inverse(x32) : f32->Forward(x32);
      flows::FlowResult b = inverse ? f64->Inverse(x) : f64->Forward(x);
      ASSERT_TRUE(a.status.ok()) << f32->name() << ": " << a.status;
      ASSERT_EQ(a.value.dtype(), kFloat32);
      for (int64_t i = 0; i < x.numel(); ++i)
        EXPECT_NEAR(a.value[i], b.value[i], 1e-4) << f32->name();
      for (int64_t i = 0; i < 100; ++i)
        EXPECT_NEAR(a.logdet[i], b.logdet[i], 1e-3) << f32->name();
    }
  }
}

TEST(RecursiveSphereFlow, TrainingReachesTheVmfNll) {
  Rng rng(7);
  Eigen::Vector3d mu(0.3, -0.5, 0.8);
  auto vmf = *VonMisesFisher::Create(mu.normalized(), 8.0);
  Tensor data = vmf->Sample(512, rng);
  const double truth = -Mean(vmf->LogProb(data)).item();
  for (const auto& o : Cases()) {
    std::vector<std::shared_ptr<flows::Flow>> chain = {
        *RecursiveSphereFlow::Create(o, rng),
        *RecursiveSphereFlow::Create(o, rng)};
    ManifoldFlowModel model(UniformSphere::Create(3).value(), chain);
    nn::AdamOptions adam;
    adam.lr = 1e-2;
    auto opt = nn::Adam::Create(model, adam).value();
    auto nll = [&] { return -Mean(model.LogProb(data)); };
    double first = 0, last = 0;
    for (int step = 0; step < 60; ++step) {
      TapeScope scope;
      Tensor loss = nll();
      if (step == 0) first = loss.item();
      last = loss.item();
      opt->ZeroGrad();
      Backward(loss);
      opt->Step();
    }
    // From the uniform density to within 0.15 nats of the vMF's own NLL on
    // the sample (uniform is 1.8 nats worse).
    EXPECT_NEAR(first, std::log(4 * M_PI), 1e-9) << chain[0]->name();
    EXPECT_LT(last, truth + 0.15) << chain[0]->name();
  }
}

// A numeric inverse that fails inside a chain (a Moebius mixture whose
// azimuth net went non-finite) is an error from TrySample, also through a
// FlowMixture, instead of silent NaN draws; a healthy chain's TrySample gives
// Sample's draws bit for bit, on the sphere.
TEST(RecursiveSphereFlow, FailedNumericInverseIsAnErrorWhenSampling) {
  Rng rng(11);
  auto f = Make(Cases()[2], rng, 0.3);
  ASSERT_FALSE(f->analytic_inverse());
  auto base = UniformSphere::Create(3).value();
  auto model = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{f});
  {
    Rng a(12), b(12);
    absl::StatusOr<Tensor> drawn = model->TrySample(20, a);
    ASSERT_TRUE(drawn.ok()) << drawn.status();
    EXPECT_EQ(drawn->ToVector(), model->Sample(20, b).ToVector());
    EXPECT_TRUE(Manifold::Sphere(3).ContainsAll(*drawn, 1e-9));
  }
  auto healthy = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{Make(Cases()[0], rng)});
  auto mixture = FlowMixture::Create({model, healthy}).value();
  int poisoned = 0;
  for (auto& [name, p] : f->NamedParameters())
    if (name.rfind("azimuth_net.", 0) == 0) {
      std::fill_n(p.mutable_data<double>(), p.numel(), std::nan(""));
      ++poisoned;
    }
  ASSERT_GT(poisoned, 0);
  Rng a(12);
  absl::StatusOr<Tensor> drawn = model->TrySample(20, a);
  ASSERT_FALSE(drawn.ok());
  EXPECT_EQ(drawn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(drawn.status().message().find("mobius.inverse: bisection"),
            std::string::npos)
      << drawn.status();
  Rng b(12);
  flows::FlowResult pass = model->SamplePass(20, b);
  EXPECT_EQ(pass.status, drawn.status());
  ASSERT_EQ(pass.value.shape(), (Shape{20, 3}));
  for (int64_t i = 0; i < pass.value.numel(); ++i)
    EXPECT_TRUE(std::isnan(pass.value[i]));
  absl::StatusOr<Tensor> mixed = mixture->TrySample(50, a);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("FlowMixture component 0: "
                                          "mobius.inverse"),
            std::string::npos)
      << mixed.status();
}

}  // namespace
}  // namespace flowtape::manifolds
