// InvertibilityReport against direct computation: per-layer round trips
// recomputed by hand in float32 and float64, Lipschitz estimates against the
// singular values of brute-force Jacobians (Eigen SVD), an ill-conditioned
// affine coupling named as the worst layer, and a model left bit-identical.
#include "flows/invertibility.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/coupling.h"
#include "flows/planar.h"
#include "flows/resflow.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/bijection_checks.h"

namespace flowtape::flows {
namespace {

using Mat =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// `layers` couplings of `kind` on [4], conditioner 4 -> 16 -> .., weights
// perturbed away from the identity.
std::shared_ptr<Sequential> Couplings(ElementwiseKind kind, int layers,
                                      uint64_t seed, double scale_bound = 3) {
  Rng rng(seed);
  CouplingOptions o;
  o.event = Shape{4};
  o.hidden = {16};
  o.activation = nn::Activation::kTanh;
  o.transform.kind = kind;
  o.transform.scale_bound = scale_bound;
  auto s = std::make_shared<Sequential>();
  for (int i = 0; i < layers; ++i) {
    o.flip = i % 2 == 1;
    s->Add(Coupling::Create(o, rng).value());
  }
  testing::Perturb(*s, 0.4, rng);
  return s;
}

// Multiplies the log-scale outputs (odd columns of the last layer's [in, out]
// weight and bias: theta = (t, r) per entry) of an affine coupling by k.
void ScaleLogScales(Flow& coupling, double k) {
  auto params = coupling.NamedParameters();
  ASSERT_GE(params.size(), 2u);
  Tensor w = params[params.size() - 2].second, b = params.back().second;
  ASSERT_EQ(w.rank(), 2);
  double* pw = w.mutable_data<double>();
  double* pb = b.mutable_data<double>();
  for (int64_t j = 1; j < w.dim(1); j += 2) {
    pb[j] *= k;
    for (int64_t i = 0; i < w.dim(0); ++i) pw[i * w.dim(1) + j] *= k;
  }
}

std::vector<double> Values(const nn::Module& m) {
  std::vector<double> v;
  for (const auto& list : {m.NamedParameters(), m.NamedBuffers()})
    for (const auto& [name, t] : list)
      for (double e : t.ToVector()) v.push_back(e);
  return v;
}

Tensor Inputs(int64_t n, int64_t d, double scale, uint64_t seed) {
  Rng rng(seed);
  return Tensor::Randn({n, d}, rng) * scale;
}

// max_i |a_i - b_i| per sample of [N, D] tensors.
std::vector<double> RowMaxAbs(const Tensor& a, const Tensor& b) {
  std::vector<double> out(a.dim(0), 0.0);
  const int64_t d = a.numel() / a.dim(0);
  for (int64_t i = 0; i < a.numel(); ++i)
    out[i / d] = std::max(out[i / d], std::abs(a[i] - b[i]));
  return out;
}

// The round trips of every layer computed by hand, in the flow's dtype,
// compared with the report's (the same operations: equal to the bit).
void ExpectLayersMatch(const Sequential& f, const Tensor& x,
                       const Invertibility& r, bool float64) {
  NoGradScope no_grad;
  ASSERT_EQ(r.layers.size(), f.size());
  Tensor in = Cast(x, f.dtype());
  for (size_t k = 0; k < f.size(); ++k) {
    const RoundTrip& t = float64 ? r.layers[k].float64 : r.layers[k].native;
    const FlowResult fwd = f.step(k)->Forward(in);
    const FlowResult inv = f.step(k)->Inverse(fwd.value);
    const Tensor again = f.step(k)->Forward(inv.value).value;
    const std::vector<double> ef = RowMaxAbs(inv.value, in),
                              ei = RowMaxAbs(again, fwd.value);
    for (int64_t i = 0; i < x.dim(0); ++i) {
      EXPECT_EQ(t.forward.per_sample_max[i], ef[i]) << "layer " << k;
      EXPECT_EQ(t.inverse.per_sample_max[i], ei[i]) << "layer " << k;
      EXPECT_EQ(t.logdet_gap.per_sample_max[i],
                std::abs(fwd.logdet[i] + inv.logdet[i]))
          << "layer " << k;
    }
    EXPECT_EQ(t.forward.max, *std::max_element(ef.begin(), ef.end()));
    in = fwd.value;
  }
}

void CheckPerLayerErrors(ElementwiseKind kind) {
  const Tensor x = Inputs(8, 4, 3.0, 5);
  auto f32 = Couplings(kind, 3, 1);
  auto f64 = Couplings(kind, 3, 1);
  f32->To(kFloat32);
  f64->To(kFloat32);  // the same rounded values, in float64
  f64->To(kFloat64);
  const std::vector<double> before = Values(*f32);
  auto r = InvertibilityReport(*f32, x);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dtype, kFloat32);
  ExpectLayersMatch(*f32, x, *r, /*float64=*/false);
  ExpectLayersMatch(*f64, x, *r, /*float64=*/true);
  // float32 round trips lose a few ulps; float64 ones a few of its own.
  EXPECT_GT(r->model.native.forward.max, 1e-9);
  EXPECT_LT(r->model.float64.forward.max, 1e-12);
  // The model is back in float32 with the same values.
  EXPECT_EQ(f32->dtype(), kFloat32);
  EXPECT_EQ(Values(*f32), before);
}

TEST(Invertibility, PerLayerErrorsMatchDirectComputationAffine) {
  CheckPerLayerErrors(ElementwiseKind::kAffine);
}

TEST(Invertibility, PerLayerErrorsMatchDirectComputationAdditive) {
  CheckPerLayerErrors(ElementwiseKind::kAdditive);
}

double SigmaMax(const Tensor& jacobian) {
  const int64_t d = jacobian.dim(0);
  Mat j = Eigen::Map<const Mat>(jacobian.data<double>(), d, jacobian.dim(1));
  return Eigen::JacobiSVD<Mat>(j).singularValues()(0);
}

// Lip(f) at x_n and Lip(f^-1) at z_n = f(x_n) against the largest singular
// values of the brute-force Jacobians of Forward and Inverse.
void CheckLipschitz(const Flow& f, const Tensor& x) {
  InvertibilityOptions o;
  o.power_iterations = 5000;
  o.power_tolerance = 1e-13;
  auto r = InvertibilityReport(f, x, o);
  ASSERT_TRUE(r.ok()) << r.status();
  const Tensor z = [&] {
    NoGradScope no_grad;
    return f.Forward(x).value;
  }();
  for (int64_t i = 0; i < x.dim(0); ++i) {
    TapeScope scope;
    const Tensor xi = Narrow(x, 0, i, 1), zi = Narrow(z, 0, i, 1);
    const double lf = SigmaMax(
        Jacobian([&](const Tensor& t) { return f.Forward(t).value; }, xi));
    const double li = SigmaMax(
        Jacobian([&](const Tensor& t) { return f.Inverse(t).value; }, zi));
    EXPECT_NEAR(r->model.lipschitz[i], lf, 1e-6 * lf) << f.name() << " " << i;
    EXPECT_NEAR(r->model.inverse_lipschitz[i], li, 1e-6 * li)
        << f.name() << " " << i;
    EXPECT_NEAR(r->model.condition[i], lf * li, 1e-5 * lf * li);
  }
  EXPECT_LT(r->model.power_iterations, o.power_iterations);
}

TEST(Invertibility, LipschitzMatchesSvdPlanar) {
  auto f = Planar::Create(Tensor::FromVector({3}, {1.0, 0.5, -0.3}),
                          Tensor::FromVector({3}, {2.0, 1.0, 0.5}), 0.2)
               .value();
  CheckLipschitz(*f, Inputs(5, 3, 1.0, 2));
}

TEST(Invertibility, LipschitzMatchesSvdAffineCoupling) {
  CheckLipschitz(*Couplings(ElementwiseKind::kAffine, 3, 3),
                 Inputs(5, 4, 1.5, 3));
}

TEST(Invertibility, LipschitzMatchesSvdResidualBlock) {
  Rng rng(4);
  ResidualOptions o;
  o.dim = 3;
  o.hidden = {8, 8};
  o.activation = nn::Activation::kTanh;
  o.spectral = SpectralMode::kConverged;
  auto f = ResidualBlock::Create(o, rng).value();
  testing::Perturb(*f, 1.0, rng);  // sigma(W) > c: the normalisation binds
  CheckLipschitz(*f, Inputs(5, 3, 1.0, 4));
}

// kTrain spectral norms update their buffers on recorded calls; the report
// restores them, and a float64 model comes back bit-identical.
TEST(Invertibility, LeavesTheModelAsItFoundIt) {
  Rng rng(6);
  ResidualOptions o;
  o.dim = 3;
  o.hidden = {8};
  o.spectral = SpectralMode::kTrain;
  auto f = ResidualBlock::Create(o, rng).value();
  testing::Perturb(*f, 1.0, rng);
  const std::vector<double> before = Values(*f);
  ASSERT_TRUE(InvertibilityReport(*f, Inputs(4, 3, 1.0, 6)).ok());
  EXPECT_EQ(Values(*f), before);
}

TEST(Invertibility, IllConditionedCouplingIsFlaggedAndNamed) {
  const Tensor x = Inputs(16, 4, 1.0, 7);
  auto f = Couplings(ElementwiseKind::kAffine, 4, 8, /*scale_bound=*/40);
  ScaleLogScales(*f->step(2), 25.0);
  f->To(kFloat32);
  auto r = InvertibilityReport(*f, x);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->worst_layers.size(), 4u);
  EXPECT_EQ(r->worst_layers[0], 2u);
  EXPECT_EQ(r->layers[2].name, "2 affine_coupling");
  EXPECT_GT(r->layers[2].max_condition, 1e6);
  EXPECT_GT(r->layers[2].max_inverse_lipschitz, 1e3);
  EXPECT_GT(r->layers[2].native.max_digits_lost, 3.0);
  for (size_t k : {0, 1, 3}) {
    EXPECT_LT(r->layers[k].max_condition, 1e3) << k;
    EXPECT_LT(r->layers[k].native.max_digits_lost, 2.0) << k;
  }
  EXPECT_GT(r->model.max_condition, 1e6);
  const std::string table = FormatInvertibility(*r);
  EXPECT_NE(table.find("most digits lost: 2 affine_coupling"),
            std::string::npos)
      << table;
}

// A residual block whose spectral normalisation is switched off (frozen
// u = v = 0: sigma = 0, W_sn = W) with large weights: Lip(g) > 1, the fixed
// point of the inverse does not converge, and the report says so.
TEST(Invertibility, FailedNumericInverseIsReportedNotFatal) {
  Rng rng(10);
  ResidualOptions o;
  o.dim = 2;
  o.hidden = {16};
  o.activation = nn::Activation::kTanh;
  o.spectral = SpectralMode::kFrozen;
  o.inverse_max_iterations = 200;
  auto f = ResidualBlock::Create(o, rng).value();
  testing::Perturb(*f, 3.0, rng);
  for (const auto& [name, t] : f->NamedBuffers()) {
    Tensor b = t;
    std::fill_n(b.mutable_data<double>(), b.numel(), 0.0);
  }
  auto r = InvertibilityReport(*f, Inputs(4, 2, 2.0, 10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->model.native.status.ok());
  EXPECT_TRUE(std::isinf(r->model.native.max_digits_lost));
  EXPECT_NE(FormatInvertibility(*r).find(
                std::string(r->model.native.status.message())),
            std::string::npos);
}

TEST(Invertibility, RejectsBadInput) {
  auto f = Couplings(ElementwiseKind::kAdditive, 1, 9);
  EXPECT_FALSE(InvertibilityReport(*f, Tensor()).ok());
  EXPECT_FALSE(InvertibilityReport(*f, Tensor::Zeros({4})).ok());
  EXPECT_FALSE(
      InvertibilityReport(*f, Tensor::FromVector({1, 4}, {0, NAN, 0, 0})).ok());
  InvertibilityOptions o;
  o.power_iterations = 0;
  EXPECT_FALSE(InvertibilityReport(*f, Tensor::Zeros({2, 4}), o).ok());
  o = {};
  o.context = Tensor::Zeros({3, 1});
  EXPECT_FALSE(InvertibilityReport(*f, Tensor::Zeros({2, 4}), o).ok());
}

}  // namespace
}  // namespace flowtape::flows
