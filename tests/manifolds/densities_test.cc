// Densities on S^2 integrate to 1 by quadrature in (z, phi) (dA = dz dphi),
// on the 2-simplex by quadrature in the flat coordinates, and on S^4 by Monte
// Carlo; the vMF normaliser is stable for large kappa; the samplers match
// known moments.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
#include "manifolds/dirichlet.h"
#include "manifolds/invertible_matrix.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flows.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::AffineOptions;
using testing::CalibrationOptions;
using testing::CouplingOptions;
using testing::RandomInvertible;

// Gauss-Legendre nodes and weights on [a, b] (Newton on P_k).
void GaussLegendre(int k, double a, double b, std::vector<double>* x,
                   std::vector<double>* w) {
  x->resize(k);
  w->resize(k);
  for (int i = 0; i < k; ++i) {
    double t = std::cos(M_PI * (i + 0.75) / (k + 0.5)), dp = 0.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = t;
      for (int j = 2; j <= k; ++j) {
        const double p2 = ((2.0 * j - 1) * t * p1 - (j - 1.0) * p0) / j;
        p0 = p1;
        p1 = p2;
      }
      dp = k * (t * p1 - p0) / (t * t - 1.0);
      const double step = p1 / dp;
      t -= step;
      if (std::abs(step) < 1e-16) break;
    }
    (*x)[i] = 0.5 * (a + b) + 0.5 * (b - a) * t;
    (*w)[i] = (b - a) / ((1.0 - t * t) * dp * dp);
  }
}

// int_{S^2} exp(log_prob) dA with Gauss-Legendre in z, trapezoid in phi.
double IntegrateS2(const ManifoldDensity& d, int nz, int nphi) {
  std::vector<double> z, w;
  GaussLegendre(nz, -1.0, 1.0, &z, &w);
  Tensor pts = Tensor::Empty({nz * nphi, 3});
  double* p = pts.mutable_data<double>();
  for (int i = 0; i < nz; ++i)
    for (int j = 0; j < nphi; ++j) {
      const double phi = 2.0 * M_PI * (j + 0.5) / nphi;
      const double r = std::sqrt(1.0 - z[i] * z[i]);
      double* row = p + (i * nphi + j) * 3;
      row[0] = r * std::cos(phi);
      row[1] = r * std::sin(phi);
      row[2] = z[i];
    }
  TapeScope scope;
  Tensor lp = d.LogProb(pts).Detach();
  double total = 0.0;
  for (int i = 0; i < nz; ++i)
    for (int j = 0; j < nphi; ++j)
      total += w[i] * (2.0 * M_PI / nphi) * std::exp(lp[i * nphi + j]);
  return total;
}

// int over the 2-simplex in flat coordinates, x1 = u, x2 = (1 - u) v.
double IntegrateSimplex2(const ManifoldDensity& d, int k) {
  std::vector<double> t, w;
  GaussLegendre(k, 0.0, 1.0, &t, &w);
  Tensor pts = Tensor::Empty({k * k, 3});
  double* p = pts.mutable_data<double>();
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) {
      double* row = p + (i * k + j) * 3;
      row[0] = t[i];
      row[1] = (1.0 - t[i]) * t[j];
      row[2] = 1.0 - row[0] - row[1];
    }
  NoGradScope no_grad;
  Tensor lp = d.LogProb(pts);
  double total = 0.0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j)
      total += w[i] * w[j] * (1.0 - t[i]) * std::exp(lp[i * k + j]);
  return total;
}

TEST(Densities, SphereDensitiesIntegrateToOneOnS2) {
  Rng rng(21);
  Eigen::MatrixXd m = RandomInvertible(3, rng);
  Eigen::Vector3d mu(0.6, 0.0, 0.8);
  EXPECT_NEAR(IntegrateS2(*UniformSphere::Create(3).value(), 8, 8), 1.0, 1e-14);
  EXPECT_NEAR(IntegrateS2(**AngularCentralGaussian::Create(m * m.transpose()),
                          200, 200),
              1.0, 1e-8);
  EXPECT_NEAR(IntegrateS2(**VonMisesFisher::Create(mu, 0.01), 50, 50), 1.0,
              1e-12);
  EXPECT_NEAR(IntegrateS2(**VonMisesFisher::Create(mu, 20.0), 200, 200), 1.0,
              1e-8);
}

// Random chains at this seed are moderately concentrated; some seeds give
// densities so peaked that a 200 x 200 grid misses mass (|error| up to 0.4).
TEST(Densities, FlowModelsIntegrateToOneOnS2) {
  Rng rng(23);
  auto base = UniformSphere::Create(3).value();
  std::vector<std::shared_ptr<flows::Flow>> chain;
  for (int k = 0; k < 4; ++k)
    chain.push_back(
        NormalizedAffine::Create(AffineOptions(3, 0.4), rng).value());
  auto model = std::make_shared<ManifoldFlowModel>(base, chain);
  EXPECT_NEAR(IntegrateS2(*model, 200, 200), 1.0, 1e-7);
  auto other = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{
                NormalizedAffine::Create(AffineOptions(3, 0.4), rng).value()});
  auto mixture = FlowMixture::Create({model, other}).value();
  EXPECT_NEAR(IntegrateS2(*mixture, 200, 200), 1.0, 1e-7);
  // The neural flow's density goes through the generic volume ratio.
  auto nf = CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng).value();
  for (Tensor p : nf->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rng.Normal();
  ManifoldFlowModel neural(base, {nf});
  EXPECT_NEAR(IntegrateS2(neural, 120, 120), 1.0, 1e-5);
}

// Mixture logits that overflowed in training (NaN or +inf) define no
// weights: the samples are rows of NaN (as the log-density is NaN), not an
// abort in the draw of the components, and TrySample is an error; a -inf
// logit is a weight of 0.
TEST(Densities, FlowMixtureWithUndefinedWeightsSamplesNaN) {
  Rng rng(23);
  auto base = UniformSphere::Create(3).value();
  auto part = [&] {
    return std::make_shared<ManifoldFlowModel>(
        base,
        std::vector<std::shared_ptr<flows::Flow>>{
            NormalizedAffine::Create(AffineOptions(3, 0.4), rng).value()});
  };
  auto made = FlowMixture::Create({part(), part()});
  ASSERT_TRUE(made.ok()) << made.status();
  const FlowMixture& mixture = **made;
  Tensor logits;
  for (const auto& [name, t] : mixture.NamedParameters())
    if (name == "logits") logits = t;
  ASSERT_TRUE(logits.defined());
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {std::nan(""), inf}) {
    logits.mutable_data<double>()[1] = bad;
    Tensor s = mixture.Sample(5, rng);
    ASSERT_EQ(s.dim(0), 5);
    ASSERT_EQ(s.dim(1), 3);
    for (int64_t i = 0; i < s.numel(); ++i) EXPECT_TRUE(std::isnan(s[i]));
    // TrySample says why instead.
    absl::StatusOr<Tensor> t = mixture.TrySample(5, rng);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("define no weights"), std::string::npos)
        << t.status();
  }
  logits.mutable_data<double>()[1] = -inf;
  Tensor s = mixture.Sample(50, rng);
  for (int64_t i = 0; i < s.numel(); ++i) EXPECT_TRUE(std::isfinite(s[i]));
}

TEST(Densities, SimplexDensitiesIntegrateToOne) {
  Rng rng(23);
  auto dir = std::shared_ptr<Dirichlet>(*Dirichlet::Create({2.0, 3.0, 4.0}));
  EXPECT_NEAR(IntegrateSimplex2(*dir, 10), 1.0, 1e-13);
  EXPECT_NEAR(IntegrateSimplex2(**Dirichlet::Create({1, 1, 1}), 2), 1.0, 1e-14);
  std::shared_ptr<flows::Flow> fcal(
      *SimplexCalibration::Create(0.8, {0.3, -0.2, 0.5}));
  EXPECT_NEAR(IntegrateSimplex2(ManifoldFlowModel(dir, {fcal}), 300), 1.0,
              1e-6);
  auto gcal =
      GeneralizedCalibration::Create(CalibrationOptions(3, 0.2), rng).value();
  EXPECT_NEAR(IntegrateSimplex2(ManifoldFlowModel(dir, {gcal}), 300), 1.0,
              1e-5);
}

TEST(Densities, MonteCarloOnS4) {
  Rng rng(24);
  const int64_t n = 5, num = 200000;
  Manifold s = Manifold::Sphere(n);
  Eigen::MatrixXd m =
      Eigen::MatrixXd::Identity(n, n) + 0.15 * testing::RandomMatrix(n, n, rng);
  Eigen::VectorXd mu = Eigen::VectorXd::Ones(n).normalized();
  std::vector<std::shared_ptr<flows::Flow>> chain;
  for (int k = 0; k < 3; ++k)
    chain.push_back(
        NormalizedAffine::Create(AffineOptions(n, 0.1), rng).value());
  std::vector<std::shared_ptr<ManifoldDensity>> ds = {
      std::shared_ptr<ManifoldDensity>(
          *AngularCentralGaussian::Create(m * m.transpose())),
      std::shared_ptr<ManifoldDensity>(*VonMisesFisher::Create(mu, 2.0)),
      std::make_shared<ManifoldFlowModel>(UniformSphere::Create(n).value(),
                                          chain)};
  Tensor x = s.SampleUniform(num, rng);
  for (const auto& d : ds) {
    NoGradScope no_grad;
    // E_uniform[q / u] = 1 with u = 1/|S^4|.
    Tensor ratio = Exp(d->LogProb(x) + s.LogVolume());
    const double mean = Mean(ratio).item();
    const double sd = std::sqrt(Mean(Square(ratio - mean)).item());
    EXPECT_NEAR(mean, 1.0, 5.0 * sd / std::sqrt(static_cast<double>(num)))
        << d->name();
    EXPECT_LT(5.0 * sd / std::sqrt(static_cast<double>(num)), 0.02);
  }
}

// log I_v(x) against mpmath (50 digits: mp.log(mp.besseli(v, x))) over every
// branch (series, Boost, Hankel, Debye) and across the switches at v = 50
// and x = 700, plus the closed forms of I_(1/2) and I_(3/2).
TEST(Densities, LogBesselIMatchesReferenceValues) {
  const double xs[] = {1e-3, 1, 10, 500.1, 600, 700, 710, 1e4};
  const struct {
    double v, want[8];
  } table[] = {
      {0,
       {2.49999984375001736e-7, 0.235914358507178649, 7.94297208311869555,
        496.073907628015078, 595.882805146433893, 695.805699998443449,
        705.798605162281313, 9994.4759037814323}},
      {0.5,
       {-3.67966882546913485, -0.0643519910735317988, 7.92976891823715079,
        496.073657427582898, 595.882596639187254, 695.805521299273625,
        705.798428981777647, 9994.47589128080724}},
      {1.5,
       {-11.6860364597860441, -1.22579135264472743, 7.82440840715966587,
        496.071655825633604, 595.880928582086557, 695.804091706464031,
        705.797019538274413, 9994.4757912758069}},
      {10,
       {-91.1134371457690662, -22.0131785779730418, 3.08610785110696887,
        495.973830797793582, 595.799404181472871, 695.734221547387974,
        705.728134126923987, 9994.470903531822}},
      {49.5,
       {-522.763927233103209, -180.82509067129444, -66.3593792752538477,
        493.623699164214361, 593.840387063909064, 694.05500071217417,
        704.072560844231363, 9994.35338540537202}},
      {50,
       {-528.522889923975189, -183.130224250007683, -67.5179577376942684,
        493.573991443337636, 593.798941716810378, 694.019469552935336,
        704.037529650833811, 9994.35089779124797}},
      {99,
       {-1111.62354886174155, -427.753276275949567, -199.550160437995464,
        486.296868109276919, 587.726958492740633, 688.811626645231539,
        698.902789480119202, 9993.98583327984414}},
      {149,
       {-1732.54393702543103, -703.286733801290418, -360.036646781177974,
        474.016031015577309, 577.460351226300347, 679.995824782937754,
        690.209943769494801, 9993.36581881456283}},
      {499,
       {-6397.96617767273299, -2950.9957934613961, -1801.9563345517965,
        263.242877120344358, 398.29096340283153, 524.433835185779876,
        536.680663003661539, 9982.0278134535284}},
  };
  for (const auto& row : table)
    for (int i = 0; i < 8; ++i)
      EXPECT_NEAR(LogBesselI(row.v, xs[i]), row.want[i],
                  2e-14 * std::max(1.0, std::fabs(row.want[i])))
          << "v=" << row.v << " x=" << xs[i];
  // I_(1/2)(x) = sqrt(2/(pi x)) sinh x, I_(3/2)(x) = sqrt(2/(pi x)) (cosh x -
  // sinh x / x), in log form without overflow.
  for (double x : {0.1, 2.0, 30.0, 499.0, 701.0, 5000.0, 1e6}) {
    const double base = 0.5 * std::log(2.0 / (M_PI * x)) + x - std::log(2.0);
    const double half = base + std::log1p(-std::exp(-2.0 * x));
    const double three_halves =
        base + std::log((1.0 - 1.0 / x) + (1.0 + 1.0 / x) * std::exp(-2 * x));
    const double tol = 1e-14 * std::max(1.0, x);
    EXPECT_NEAR(LogBesselI(0.5, x), half, tol) << x;
    if (x >= 2) {  // below, the closed form itself cancels
      EXPECT_NEAR(LogBesselI(1.5, x), three_halves, tol) << x;
    }
  }
  EXPECT_EQ(LogBesselI(0.0, 0.0), 0.0);
  EXPECT_EQ(LogBesselI(2.0, 0.0), -INFINITY);
}

TEST(Densities, VmfNormalizerIsStable) {
  // log C_1000(10) (mpmath): v = 499 at kappa = 10 underflows I_v.
  EXPECT_NEAR(LogVmfNormalizer(1000, 10.0), 2032.00776275115256, 1e-10);
  // n = 3 closed form vs the Bessel route at v = 1/2; huge kappa.
  for (double k : {0.5, 20.0, 800.0, 1e5}) {
    const double bessel =
        0.5 * std::log(k) - 1.5 * std::log(2 * M_PI) - LogBesselI(0.5, k);
    EXPECT_NEAR(LogVmfNormalizer(3, k), bessel, 1e-13 * std::max(1.0, k));
  }
  EXPECT_NEAR(LogVmfNormalizer(4, 1e-12), -Manifold::Sphere(4).LogVolume(),
              1e-9);
  // S^1: C_2 = 1 / (2 pi I_0(kappa)), I_0(2) by its series sum (1/k!)^2.
  double i0 = 0, t = 1;
  for (int k = 0; k < 30; ++k) i0 += t * t, t /= k + 1;
  EXPECT_NEAR(LogVmfNormalizer(2, 2.0), -std::log(2 * M_PI * i0), 1e-14);
}

// Tiny arguments, where log I_0(x) ~ x^2 / 4 is far below 1: relative
// accuracy, not just absolute. References: the power series
// sum_k (x^2/4)^k / (k!)^2 and its log in Python's decimal at 60 digits.
TEST(Densities, LogBesselIKeepsRelativeAccuracyForTinyArguments) {
  const struct {
    double v, x, want;
  } table[] = {
      {0, 1e-8, 2.49999999999999995e-17},
      {0, 1e-5, 2.49999999998437510e-11},
      {0, 1e-3, 2.49999984375001745e-07},
      {1, 1e-8, -1.91138279245123108e+01},
  };
  for (const auto& r : table)
    EXPECT_NEAR(LogBesselI(r.v, r.x), r.want, 1e-14 * std::fabs(r.want))
        << "v=" << r.v << " x=" << r.x;
  EXPECT_EQ(LogBesselI(0.0, 1e-200), 0.0);  // 2.5e-401 underflows to 0
}

// log C_3(kappa) = log kappa - log(2 pi) - kappa - log(1 - exp(-2 kappa)) for
// 1e-10 < kappa < 1e-6, where log1p(-exp(-2 kappa)) lost up to 7 digits.
// References: Python decimal, 60 digits (pi to 60 digits).
TEST(Densities, VmfNormalizerOnS2KeepsItsDigitsForTinyKappa) {
  const struct {
    double kappa, want;
  } table[] = {
      {1.01e-10, -2.5310242469692907929795917609360785},
      {1e-9, -2.5310242469692907931445582609360785},
      {3e-8, -2.5310242469692909429778915942694073},
      {1e-7, -2.5310242469692924596445582609355230},
      {1e-6, -2.5310242469694574596445582553805230},
      {0.5, -2.5723491015822089019562479492020821},
      {10, -9.5352919713541461749799330595962993},
  };
  for (const auto& r : table)
    EXPECT_NEAR(LogVmfNormalizer(3, r.kappa), r.want, 4e-15)
        << "kappa=" << r.kappa;
}

TEST(Densities, SamplersMatchMoments) {
  Rng rng(25);
  const int64_t num = 40000;
  // vMF: E[mu.x] = I_{n/2}(k) / I_{n/2-1}(k).
  for (int64_t n : {3, 5}) {
    for (double kappa : {0.5, 4.0, 50.0}) {
      Eigen::VectorXd mu = Eigen::VectorXd::Zero(n);
      mu[n - 1] = 1.0;
      auto d = *VonMisesFisher::Create(mu, kappa);
      Tensor x = d->Sample(num, rng);
      ASSERT_TRUE(d->manifold().ContainsAll(x, 1e-12));
      Tensor w = Narrow(x, 1, n - 1, 1);
      const double mean = Mean(w).item();
      const double sd = std::sqrt(Mean(Square(w - mean)).item());
      const double expect = std::exp(LogBesselI(0.5 * n, kappa) -
                                     LogBesselI(0.5 * n - 1.0, kappa));
      EXPECT_NEAR(mean, expect, 5.0 * sd / std::sqrt(double(num)))
          << "n=" << n << " kappa=" << kappa;
    }
  }
  // Dirichlet: E[x] = alpha / sum(alpha).
  auto dir = *Dirichlet::Create({0.5, 2.0, 3.5});
  Tensor p = dir->Sample(num, rng);
  ASSERT_TRUE(dir->manifold().ContainsAll(p, 1e-12));
  Tensor mean = Mean(p, 0);
  EXPECT_NEAR(mean[0], 0.5 / 6.0, 0.005);
  EXPECT_NEAR(mean[2], 3.5 / 6.0, 0.005);
  // ACG sample second moment vs quadrature-free check: sample from the model
  // that pushes uniform through a normalized linear flow, compare densities
  // via E_q[u / q] = 1.
  Eigen::MatrixXd m = RandomInvertible(3, rng);
  auto acg = *AngularCentralGaussian::Create(m * m.transpose());
  Tensor y = acg->Sample(num, rng);
  Tensor r = Exp(-acg->LogProb(y) - Manifold::Sphere(3).LogVolume());
  const double mr = Mean(r).item();
  const double sr = std::sqrt(Mean(Square(r - mr)).item());
  EXPECT_NEAR(mr, 1.0, 5.0 * sr / std::sqrt(double(num)));
}

void ExpectInvalid(const absl::Status& s, const std::string& part) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(part), std::string::npos) << s;
}

// What the constructors abort on (or crash on) is a Status from Create.
TEST(Densities, CreateRefusesBadArgumentsWithAStatus) {
  ExpectInvalid(UniformSphere::Create(1).status(), "n = 1 must be >= 2");
  ExpectInvalid(UniformSphere::Create(-3).status(), "n = -3");
  auto sphere = UniformSphere::Create(4);
  ASSERT_TRUE(sphere.ok()) << sphere.status();
  EXPECT_NEAR((*sphere)->LogProb(Tensor::FromVector({1, 4}, {1, 0, 0, 0}))[0],
              -std::log(2 * M_PI * M_PI), 1e-14);  // |S^3| = 2 pi^2

  ExpectInvalid(FlowMixture::Create({}).status(), "no components");
  auto s2 = UniformSphere::Create(3).value();
  ExpectInvalid(FlowMixture::Create({s2, nullptr}).status(),
                "component 1 is null");
  ExpectInvalid(
      FlowMixture::Create({s2, UniformSphere::Create(4).value()}).status(),
      "component 1 lives on S^3, component 0 on S^2");
  std::shared_ptr<ManifoldDensity> simplex(*Dirichlet::Create({1, 2, 3}));
  ExpectInvalid(FlowMixture::Create({s2, simplex}).status(),
                "component 1 lives on Delta^2");

  Rng rng(3);
  ExpectInvalid(InvertibleMatrix::Create(0, rng).status(), "n = 0 must be");
  ExpectInvalid(InvertibleMatrix::Create(3, rng, -0.1).status(),
                "noise = -0.1");
  ExpectInvalid(InvertibleMatrix::Create(3, rng, std::nan("")).status(),
                "must be finite");
  auto m = InvertibleMatrix::Create(3, rng, 0.2);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NEAR(std::abs((*m)->Value().determinant()),
              std::exp((*m)->LogAbsDet().item()), 1e-12);
  auto identity = InvertibleMatrix::Create(3, rng);  // noise 0: M = I
  ASSERT_TRUE(identity.ok());
  EXPECT_EQ(((*identity)->Value() - Eigen::MatrixXd::Identity(3, 3))
                .cwiseAbs()
                .maxCoeff(),
            0.0);
}

// A flow whose pass fails (as a numeric inverse or ODE solve does): NaN
// values and a status; `forward_ok` lets one direction succeed.
class FailingFlow : public flows::Flow {
 public:
  explicit FailingFlow(bool forward_ok) : forward_ok_(forward_ok) {}
  flows::FlowResult Forward(const Tensor& x, const Tensor&,
                            Rng* rng) const override {
    EXPECT_NE(rng, nullptr);  // the model hands its flows an rng
    return forward_ok_ ? flows::FlowResult(x, Tensor::Zeros({x.dim(0)}))
                       : Failed(x);
  }
  flows::FlowResult Inverse(const Tensor& z, const Tensor&,
                            Rng* rng) const override {
    EXPECT_NE(rng, nullptr);
    return Failed(z);
  }
  std::string name() const override { return "failing"; }

 private:
  static flows::FlowResult Failed(const Tensor& x) {
    const double nan = std::nan("");
    flows::FlowResult r(Tensor::Full(x.shape(), nan, x.dtype()),
                        Tensor::Full({x.dim(0)}, nan, x.dtype()));
    r.status = absl::InternalError("failing: the solve did not converge");
    return r;
  }
  bool forward_ok_;
};

// ManifoldFlowModel passes a failed step's status on (Score, SamplePass,
// TryLogProb, TrySample; FlowMixture's Try* name the component) instead of
// returning NaN as if nothing happened; steps after the failing one do not
// run; healthy chains give LogProb's values from TryLogProb.
TEST(Densities, FlowModelPassesAFailedStepsStatusOn) {
  Rng rng(31);
  auto base = UniformSphere::Create(3).value();
  auto affine = NormalizedAffine::Create(AffineOptions(3, 0.4), rng).value();
  auto failing = std::make_shared<FailingFlow>(/*forward_ok=*/false);
  auto bad = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{affine, failing, affine});
  auto good = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{affine});
  Tensor y = Manifold::Sphere(3).SampleUniform(6, rng);

  ManifoldFlowModel::Density d = bad->Score(y);
  EXPECT_EQ(d.pass.status.code(), absl::StatusCode::kInternal);
  ASSERT_EQ(d.log_prob.shape(), (Shape{6}));
  for (int64_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isnan(d.log_prob[i]));
  absl::StatusOr<Tensor> lp = bad->TryLogProb(y);
  ASSERT_FALSE(lp.ok());
  EXPECT_EQ(lp.status().message(), "failing: the solve did not converge");
  Rng a(5);
  absl::StatusOr<Tensor> drawn = bad->TrySample(4, a);
  ASSERT_FALSE(drawn.ok());
  EXPECT_EQ(drawn.status().code(), absl::StatusCode::kInternal);

  // Forward fine, Inverse failing: scoring works, sampling reports.
  auto half = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{
                affine, std::make_shared<FailingFlow>(/*forward_ok=*/true)});
  absl::StatusOr<Tensor> half_lp = half->TryLogProb(y);
  ASSERT_TRUE(half_lp.ok()) << half_lp.status();
  EXPECT_EQ(half_lp->ToVector(), good->LogProb(y).ToVector());
  EXPECT_FALSE(half->TrySample(4, a).ok());

  absl::StatusOr<Tensor> good_lp = good->TryLogProb(y);
  ASSERT_TRUE(good_lp.ok()) << good_lp.status();
  EXPECT_EQ(good_lp->ToVector(), good->LogProb(y).ToVector());

  auto mixture = FlowMixture::Create({good, bad}).value();
  absl::StatusOr<Tensor> mixed = mixture->TryLogProb(y);
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(mixed.status().message(),
            "FlowMixture component 1: failing: the solve did not converge");
  auto fine = FlowMixture::Create({good, half}).value();
  absl::StatusOr<Tensor> fine_lp = fine->TryLogProb(y);
  ASSERT_TRUE(fine_lp.ok()) << fine_lp.status();
  EXPECT_EQ(fine_lp->ToVector(), fine->LogProb(y).ToVector());
  // log(w1 q + w2 q) = log q for equal components.
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_NEAR((*fine_lp)[i], good->LogProb(y)[i], 1e-12);
}

}  // namespace
}  // namespace flowtape::manifolds
