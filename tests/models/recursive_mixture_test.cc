// The sphere model kind "recursive_mixture" (models/sphere_model.h): K
// chains of recursive sphere flows mixed by manifolds::FlowMixture, with
// trained-looking (perturbed) parameters and unequal weights. Its density
// integrates to 1 over S^2 (the Gauss product rule of
// manifolds/sphere_quadrature.h); its samples agree with its density (a
// 4 x 6 histogram in (z, phi) against the density's cell masses, and the
// first and second moments of x against quadrature); gradients w.r.t.
// points and parameters (weights included) equal finite differences in
// float64; in float32 it scores like float64 and samples on the sphere.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/manifold.h"
#include "manifolds/sphere_quadrature.h"
#include "models/sphere_model.h"
#include "tests/gradcheck.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::models {
namespace {

using manifolds::ManifoldDensity;

constexpr double kPi = 3.14159265358979323846;
const std::vector<double> kLogits = {1.0, -0.7, 0.2};

// Three chains (affine, recursive, affine), 6 bins, conditioners 8-8,
// parameters moved off their initial values by N(0, 0.3^2) (rounded to
// float32, so a float32 copy holds the same values) and weights
// softmax(kLogits) = (0.62, 0.11, 0.27).
std::shared_ptr<ManifoldDensity> Make(DType dtype) {
  SphereModelSpec spec;
  spec.kind = "recursive_mixture";
  spec.components = 3;
  spec.blocks = 1;
  spec.hidden = 8;
  spec.bins = 6;
  SphereModelInit init;
  init.random_point = [](Rng& r) {
    return Eigen::Vector3d(r.Normal(), r.Normal(), r.Normal()).normalized();
  };
  Rng rng(21);
  auto model = MakeSphereModel(spec, init, rng);
  EXPECT_TRUE(model.ok()) << model.status();
  Rng noise(22);
  for (auto& [name, p] : (*model)->NamedParameters()) {
    double* d = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i)
      d[i] = name == "logits" ? kLogits.at(i)
                              : static_cast<float>(d[i] + 0.3 * noise.Normal());
  }
  (*model)->To(dtype);
  return *model;
}

Tensor Cylinder(const std::vector<double>& z, const std::vector<double>& phi) {
  std::vector<double> pts;
  for (double zi : z)
    for (double p : phi) {
      const double r = std::sqrt((1 - zi) * (1 + zi));
      pts.insert(pts.end(), {r * std::cos(p), r * std::sin(p), zi});
    }
  return Tensor::FromVector({static_cast<int64_t>(z.size() * phi.size()), 3},
                            pts);
}

// Gauss-Legendre nodes and weights on [a, b].
manifolds::QuadratureRule Gauss(int n, double a, double b) {
  manifolds::QuadratureRule r = manifolds::GaussLegendre(n);
  for (double& x : r.nodes) x = a + (b - a) * (x + 1) / 2;
  for (double& w : r.weights) w *= (b - a) / 2;
  return r;
}

TEST(RecursiveMixture, DensityIntegratesToOneOnTheSphere) {
  auto model = Make(kFloat64);
  // The product rule: n Gauss nodes in z, 2n angles pi k / n, weight
  // w_j pi / n (dA = dz dphi). The spline knots leave kinks in the density,
  // so the rule converges algebraically: about 2e-5 at n = 150.
  const int n = 150;
  const manifolds::QuadratureRule g = manifolds::GaussLegendre(n);
  std::vector<double> phi(2 * n);
  for (int k = 0; k < 2 * n; ++k) phi[k] = kPi * k / n;
  TapeScope scope;
  NoGradScope no_grad;
  const Tensor lp = model->LogProb(Cylinder(g.nodes, phi));
  double mass = 0;
  for (int j = 0; j < n; ++j)
    for (int k = 0; k < 2 * n; ++k)
      mass += g.weights[j] * (kPi / n) * std::exp(lp[j * 2 * n + k]);
  EXPECT_NEAR(mass, 1.0, 2e-4);
}

TEST(RecursiveMixture, SamplesAgreeWithTheDensity) {
  auto model = Make(kFloat64);
  Rng rng(23);
  const int64_t num = 40000;
  const Tensor s = model->Sample(num, rng);
  ASSERT_EQ(s.dim(0), num);
  ASSERT_TRUE(manifolds::Manifold::Sphere(3).ContainsAll(s, 1e-10));
  // Cell masses: a 64 x 64 Gauss rule on each cell of 4 bands in z times 6
  // sectors in phi (the density has kinks along the spline knots and steep
  // flanks: the cells sum to 1 - 8e-3 at 24 x 24, 1 - 7e-4 at 48 x 48,
  // 1 - 1.4e-5 at 80 x 80).
  const int nz = 4, nphi = 6, q = 64;
  std::vector<double> expect(nz * nphi, 0.0), count(nz * nphi, 0.0);
  double total = 0;
  TapeScope scope;
  NoGradScope no_grad;
  for (int a = 0; a < nz; ++a)
    for (int b = 0; b < nphi; ++b) {
      const auto gz = Gauss(q, -1.0 + 2.0 * a / nz, -1.0 + 2.0 * (a + 1) / nz);
      const auto gp = Gauss(q, 2 * kPi * b / nphi, 2 * kPi * (b + 1) / nphi);
      const Tensor lp = model->LogProb(Cylinder(gz.nodes, gp.nodes));
      for (int i = 0; i < q; ++i)
        for (int j = 0; j < q; ++j)
          expect[a * nphi + b] +=
              gz.weights[i] * gp.weights[j] * std::exp(lp[i * q + j]);
      total += expect[a * nphi + b];
    }
  EXPECT_NEAR(total, 1.0, 1e-3);
  for (int64_t i = 0; i < num; ++i) {
    const double z = s[i * 3 + 2];
    double phi = std::atan2(s[i * 3 + 1], s[i * 3]);
    if (phi < 0) phi += 2 * kPi;
    const int a = std::min(nz - 1, static_cast<int>((z + 1) / 2 * nz));
    const int b = std::min(nphi - 1, static_cast<int>(phi / (2 * kPi) * nphi));
    count[a * nphi + b] += 1;
  }
  // Pearson's chi^2 with 23 degrees of freedom: P(chi^2 > 60) ~ 4e-5.
  double chi2 = 0;
  for (int c = 0; c < nz * nphi; ++c) {
    const double e = num * expect[c];
    ASSERT_GT(e, 20) << "cell " << c;
    chi2 += (count[c] - e) * (count[c] - e) / e;
  }
  EXPECT_LT(chi2, 60.0);
  // E[x_i] and E[x_i x_j] by the product rule (n = 100) against sample
  // means, within 5 standard errors.
  const int n = 100;
  const manifolds::QuadratureRule g = manifolds::GaussLegendre(n);
  std::vector<double> phi(2 * n);
  for (int k = 0; k < 2 * n; ++k) phi[k] = kPi * k / n;
  const Tensor pts = Cylinder(g.nodes, phi);
  const Tensor lp = model->LogProb(pts);
  for (int i = 0; i < 3; ++i)
    for (int j = -1; j <= i; ++j) {  // j = -1: the first moment of x_i
      auto f = [&](const Tensor& x, int64_t r) {
        return x[r * 3 + i] * (j < 0 ? 1.0 : x[r * 3 + j]);
      };
      double m1 = 0, m2 = 0;
      for (int64_t r = 0; r < num; ++r) {
        m1 += f(s, r) / num;
        m2 += f(s, r) * f(s, r) / num;
      }
      double want = 0;
      for (int a = 0; a < n; ++a)
        for (int k = 0; k < 2 * n; ++k) {
          const int64_t r = a * 2 * n + k;
          want += g.weights[a] * (kPi / n) * std::exp(lp[r]) * f(pts, r);
        }
      EXPECT_NEAR(m1, want, 5 * std::sqrt((m2 - m1 * m1) / num))
          << "x_" << i << (j < 0 ? "" : " x_" + std::to_string(j));
    }
}

TEST(RecursiveMixture, GradientsMatchFiniteDifferences) {
  auto model = Make(kFloat64);
  Rng rng(24);
  const Tensor x = manifolds::Manifold::Sphere(3).SampleUniform(5, rng);
  const Tensor r = Tensor::Randn({5}, rng);
  auto loss = [&](const std::vector<Tensor>& in) {
    return Sum(model->LogProb(in[0]) * r);
  };
  EXPECT_LT(flowtape::testing::GradientError(loss, {x}), 1e-6);
  EXPECT_LT(manifolds::testing::ParameterGradientError(
                *model, [&] { return loss({x}); }),
            1e-6);
}

TEST(RecursiveMixture, Float32ScoresLikeFloat64AndSamplesOnTheSphere) {
  auto m64 = Make(kFloat64), m32 = Make(kFloat32);
  ASSERT_EQ(m32->dtype(), kFloat32);
  Rng rng(25);
  const Tensor x32 =
      Cast(manifolds::Manifold::Sphere(3).SampleUniform(200, rng), kFloat32);
  TapeScope scope;
  const Tensor a = m32->LogProb(x32);
  ASSERT_EQ(a.dtype(), kFloat32);
  Tensor b;
  {
    NoGradScope no_grad;
    b = m64->LogProb(Cast(x32, kFloat64));
  }
  for (int64_t i = 0; i < 200; ++i) EXPECT_NEAR(a[i], b[i], 1e-3);
  // A float32 gradient reaches every parameter, finite.
  std::vector<Tensor> params = m32->Parameters();
  const std::vector<Tensor> grads = Grad({-Mean(a)}, params);
  for (const Tensor& g : grads) {
    ASSERT_EQ(g.dtype(), kFloat32);
    for (int64_t i = 0; i < g.numel(); ++i) ASSERT_TRUE(std::isfinite(g[i]));
  }
  NoGradScope no_grad;
  const Tensor s = m32->Sample(500, rng);
  ASSERT_EQ(s.dtype(), kFloat32);
  EXPECT_TRUE(manifolds::Manifold::Sphere(3).ContainsAll(s, 1e-5));
  const Tensor lp = m32->LogProb(s);
  for (int64_t i = 0; i < 500; ++i) ASSERT_TRUE(std::isfinite(lp[i]));
}

}  // namespace
}  // namespace flowtape::models
