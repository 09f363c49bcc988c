// Sylvester flows (orthogonal, Householder, triangular) and Householder
// flows through the harness, plus what the harness cannot see: Q's
// orthonormality, closed-form values, the invertibility domain.
#include "flows/sylvester.h"

#include <Eigen/Dense>
#include <cmath>
#include <memory>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/householder.h"
#include "flows/permute.h"
#include "flows/planar.h"
#include "flows/radial.h"
#include "flows/scaling.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {
using testing::FlowCase;

SylvesterOptions Options(int64_t d, SylvesterQ q, int64_t m = 0) {
  SylvesterOptions o;
  o.dim = d;
  o.q = q;
  o.m = m;
  return o;
}

std::shared_ptr<Sylvester> MakeSylvester(const SylvesterOptions& o, Rng& r) {
  return Sylvester::Create(o, r).value();
}

testing::FlowFactory Make(SylvesterOptions o) {
  return [o](Rng& r) -> std::shared_ptr<Flow> { return MakeSylvester(o, r); };
}
testing::FlowFactory Orthogonal(int64_t d, int64_t m) {
  return Make(Options(d, SylvesterQ::kOrthogonal, m));
}
testing::FlowFactory HouseholderQ(int64_t d, int64_t k) {
  SylvesterOptions o = Options(d, SylvesterQ::kHouseholder);
  o.reflections = k;
  return Make(o);
}
testing::FlowFactory Triangular(int64_t d, bool reverse) {
  SylvesterOptions o = Options(d, SylvesterQ::kTriangular);
  o.reverse = reverse;
  return Make(o);
}

// Householder then a diagonal scaling: the reflections are seen by the NLL
// (alone they are not: the standard normal base is rotation invariant).
std::shared_ptr<Flow> HouseholderScaling(Rng& r) {
  auto s = std::make_shared<Sequential>();
  s->Add(Householder::Create(3, 2, r).value());
  s->Add(Scaling::Create(Shape{3}).value());
  return s;
}

std::shared_ptr<Flow> Conditional(Rng& r) {
  SylvesterOptions o = Options(3, SylvesterQ::kHouseholder);
  o.context_dim = 2;
  return MakeSylvester(o, r);
}

// Every variant, interleaved with other flows.
std::shared_ptr<Flow> Stack(Rng& r) {
  auto s = std::make_shared<Sequential>();
  s->Add(MakeSylvester(Options(3, SylvesterQ::kOrthogonal, 2), r));
  s->Add(Planar::Create(3, r).value());
  s->Add(Make(Options(3, SylvesterQ::kHouseholder))(r));
  s->Add(Householder::Create(3, 1, r).value());
  s->Add(Triangular(3, true)(r));
  s->Add(Radial::Create(3, r).value());
  s->Add(Triangular(3, false)(r));
  return s;
}

FLOWTAPE_FLOW_CASES(
    Sylvester,
    FlowCase("triangular_1d", Triangular(1, false), {1}).Perturb(0.5),
    FlowCase("triangular_2d", Triangular(2, false), {2}).Perturb(0.5),
    FlowCase("triangular_reverse_3d", Triangular(3, true), {3}).Perturb(0.5),
    FlowCase("orthogonal_2d", Orthogonal(2, 2), {2}).Perturb(0.5),
    FlowCase("orthogonal_2d_m1", Orthogonal(2, 1), {2}).Perturb(0.5),
    FlowCase("orthogonal_3d_m1", Orthogonal(3, 1), {3}).Perturb(0.5),
    FlowCase("orthogonal_4d_m2", Orthogonal(4, 2), {4}).Perturb(0.5),
    FlowCase("orthogonal_4d", Orthogonal(4, 4), {4}).Perturb(0.5),
    FlowCase("householder_q_2d", HouseholderQ(2, 2), {2}).Perturb(0.5),
    FlowCase("householder_q_3d_k1", HouseholderQ(3, 1), {3}).Perturb(0.5),
    FlowCase("householder_q_4d", HouseholderQ(4, 4), {4}).Perturb(0.5),
    FlowCase("householder_scaling", HouseholderScaling, {3}).Perturb(0.5),
    FlowCase("stack", Stack, {3}).Perturb(0.3),
    FlowCase("conditional_3d", Conditional, {3}, /*context_dim=*/2)
        .Perturb(0.5));

double MaxOrthoError(const Tensor& q) {
  Tensor qtq = MatMulT(q, q, true, false);
  double e = 0;
  for (int64_t i = 0; i < qtq.dim(0); ++i)
    for (int64_t j = 0; j < qtq.dim(1); ++j)
      e = std::max(e, std::fabs(qtq[i * qtq.dim(1) + j] - (i == j)));
  return e;
}

TEST(Sylvester, QHasOrthonormalColumnsAndRIsTriangular) {
  Rng rng(3);
  for (const SylvesterOptions& o : {Options(5, SylvesterQ::kOrthogonal, 3),
                                    Options(6, SylvesterQ::kOrthogonal, 6),
                                    Options(5, SylvesterQ::kHouseholder),
                                    Options(4, SylvesterQ::kTriangular)}) {
    auto keep = MakeSylvester(o, rng);
    Sylvester& f = *keep;
    testing::PerturbParameters(f, rng, 2.0);
    NoGradScope no_grad;
    Tensor q = f.Q();
    ASSERT_EQ(q.shape(), Shape({o.dim, f.options().m}));
    EXPECT_LT(MaxOrthoError(q), 1e-12);
    const int64_t m = f.options().m;
    for (const Tensor& r : {f.R(), f.RTilde()})
      for (int64_t i = 0; i < m; ++i) {
        EXPECT_LT(std::fabs(r[i * m + i]), 1.0);
        for (int64_t j = 0; j < i; ++j) EXPECT_EQ(r[i * m + j], 0.0);
      }
  }
  SylvesterOptions rev = Options(3, SylvesterQ::kTriangular);
  rev.reverse = true;
  EXPECT_EQ(MakeSylvester(rev, rng)->Q().ToVector(),
            std::vector<double>({0, 0, 1, 0, 1, 0, 1, 0, 0}));
}

TEST(Sylvester, ClosedFormValueAndOrthogonalComplementKept) {
  // D = 2, M = 1: x = z + q R tanh(R~ q.z + b) q-direction only.
  Tensor q = Tensor::FromVector({2, 1}, {0.6, 0.8});
  auto f = Sylvester::Create(q, Tensor::FromVector({1, 1}, {0.5}),
                             Tensor::FromVector({1, 1}, {-0.9}),
                             Tensor::FromVector({1}, {0.3}));
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor z = Tensor::FromVector({2, 2}, {0.2, -0.25, 3.0, -1.0});
  FlowResult x = (*f)->Inverse(z);
  for (int64_t n = 0; n < 2; ++n) {
    const double qz = 0.6 * z[2 * n] + 0.8 * z[2 * n + 1];
    const double t = std::tanh(-0.9 * qz + 0.3);
    EXPECT_NEAR(x.value[2 * n], z[2 * n] + 0.6 * 0.5 * t, 1e-15);
    EXPECT_NEAR(x.value[2 * n + 1], z[2 * n + 1] + 0.8 * 0.5 * t, 1e-15);
    EXPECT_NEAR(x.logdet[n], std::log1p(-0.45 * (1 - t * t)), 1e-15);
  }
  // Forward keeps z_perp = x - Q Q^T x and inverts.
  FlowResult back = (*f)->Forward(x.value);
  for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(back.value[i], z[i], 1e-14);
  for (int64_t n = 0; n < 2; ++n) {
    auto perp = [&](const Tensor& v) {
      return -0.8 * v[2 * n] + 0.6 * v[2 * n + 1];
    };
    EXPECT_NEAR(perp(back.value), perp(x.value), 1e-15);
    EXPECT_NEAR(back.logdet[n], -x.logdet[n], 1e-14);
  }
}

TEST(Sylvester, CreateRejectsParametersOutsideTheDomain) {
  Tensor q = Tensor::Eye(2), b = Tensor::Zeros({2});
  auto upper = [](double a, double b, double c) {
    return Tensor::FromVector({2, 2}, {a, b, 0.0, c});
  };
  // R_11 R~_11 = -1: on the boundary, not invertible.
  auto bad = Sylvester::Create(q, upper(-1, 0.3, 0.5), upper(1, 0, 0.5), b);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("must be > -1"), std::string::npos)
      << bad.status();
  // Invertible, but not representable by the tanh parametrisation.
  bad = Sylvester::Create(q, upper(2, 0, 0.5), upper(0.1, 0, 0.5), b);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("(-c, c), c = 1 - 2^-12"),
            std::string::npos)
      << bad.status();
  // |R_mm| < 1 but above c = kMaxDiag: not reachable either.
  EXPECT_FALSE(
      Sylvester::Create(q, upper(1 - 1e-4, 0, 0.5), upper(0.1, 0, 0.5), b)
          .ok());
  Tensor lower = Tensor::FromVector({2, 2}, {0.5, 0, 0.1, 0.5});
  EXPECT_FALSE(Sylvester::Create(q, lower, upper(0.5, 0, 0.5), b).ok());
  EXPECT_FALSE(
      Sylvester::Create(q * 1.1, upper(0.5, 0, 0.5), upper(0.5, 0, 0.5), b)
          .ok());  // Q not orthonormal
  EXPECT_FALSE(Sylvester::Create(Tensor::Ones({1, 2}), upper(0.5, 0, 0.5),
                                 upper(0.5, 0, 0.5), b)
                   .ok());  // M > D
  EXPECT_FALSE(
      Sylvester::Create(q, upper(NAN, 0, 0.5), upper(0.5, 0, 0.5), b).ok());
  // Close to the boundary: R_11 R~_11 = -0.9995. Steep but invertible.
  auto f = Sylvester::Create(q, upper(0.99975, 0.4, 0.5),
                             upper(-0.99975, 0.3, -0.2), b);
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor x = Tensor::FromVector({3, 2}, {0.0, 0.1, 1e-4, -2.0, -3.0, 0.5});
  FlowResult z = (*f)->Forward(x);
  FlowResult back = (*f)->Inverse(z.value);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(back.value[i], x[i], 1e-12);
  for (int64_t n = 0; n < 3; ++n) {
    EXPECT_TRUE(std::isfinite(z.logdet[n]));
    EXPECT_NEAR(z.logdet[n], -back.logdet[n], 1e-9);
  }
}

TEST(Sylvester, ParametrisationCannotLeaveTheDomain) {
  // Free diagonals pushed far out (tanh(10) = 1 - 4e-9, opposite signs):
  // R_mm R~_mm stays > -1, the map stays invertible and log-dets finite.
  Rng rng(5);
  auto keep = MakeSylvester(Options(3, SylvesterQ::kOrthogonal), rng);
  Sylvester& f = *keep;
  auto params = f.NamedParameters();
  ASSERT_EQ(params[1].first, "r");
  ASSERT_EQ(params[2].first, "r_tilde");
  for (int64_t i = 0; i < 3; ++i) {
    params[1].second.mutable_data<double>()[i * 4] = 10.0;
    params[2].second.mutable_data<double>()[i * 4] = -10.0;
  }
  Tensor r = f.R(), rt = f.RTilde();
  for (int64_t i = 0; i < 3; ++i) EXPECT_GT(r[i * 4] * rt[i * 4], -1.0);
  Tensor x = Tensor::Randn({8, 3}, rng);
  FlowResult z = f.Forward(x);
  FlowResult back = f.Inverse(z.value);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(back.value[i], x[i], 1e-10);
  for (int64_t n = 0; n < 8; ++n) EXPECT_TRUE(std::isfinite(z.logdet[n]));
  EXPECT_FALSE(f.analytic_inverse());
}

// Raw diagonals at +-40 with opposite signs: tanh rounds to exactly +-1
// there, so with R_mm = tanh(r) the product R_mm R~_mm would be exactly -1 (an
// infinite log-det where a = 0, and 0/0 in the recorded Newton sweep). With
// R_mm = c tanh(r), c = 1 - 2^-12, 1 + h' R_mm R~_mm >= 1 - c^2 ~ 4.9e-4 > 0,
// in float64 and float32. Q = I, b = 0: row 0 (z = 0) has a = 0 in both
// coordinates.
TEST(Sylvester, SaturatedDiagonalsStayInvertible) {
  for (DType dtype : {kFloat64, kFloat32}) {
    Rng rng(12);
    auto keep = MakeSylvester(Options(2, SylvesterQ::kTriangular), rng);
    Sylvester& f = *keep;
    const double raw[2][2] = {{40.0, -40.0}, {-40.0, 40.0}};  // {r, r~} at m
    for (auto& [name, p] : f.NamedParameters()) {
      if (name != "r" && name != "r_tilde") continue;
      for (int64_t m = 0; m < 2; ++m)
        p.mutable_data<double>()[m * 2 + m] = raw[m][name == "r" ? 0 : 1];
      p.mutable_data<double>()[1] = name == "r" ? 0.3 : -0.4;  // above diag
    }
    f.To(dtype);
    const double c = Sylvester::kMaxDiag;
    EXPECT_EQ(f.R()[0], c);
    EXPECT_EQ(f.RTilde()[0], -c);
    NoGradScope no_grad;
    Tensor z =
        Tensor::FromVector({3, 2}, {0.0, 0.0, 0.7, -1.3, 1.5, 0.4}, dtype);
    FlowResult x = f.Inverse(z);
    FlowResult back = f.Forward(x.value);
    // Forward loses up to 1 / (1 - c^2) = 2048 times the dtype's rounding.
    const double tol = dtype == kFloat64 ? 1e-11 : 2e-3;
    for (int64_t n = 0; n < 3; ++n) {
      ASSERT_TRUE(std::isfinite(x.logdet[n])) << n;
      EXPECT_NEAR(back.logdet[n], -x.logdet[n], tol) << n;
      for (int64_t i = 0; i < 2; ++i)
        EXPECT_NEAR(back.value[2 * n + i], z[2 * n + i], tol) << n << "," << i;
    }
    // At a = 0 each coordinate contributes log(1 - c^2), exactly representable.
    EXPECT_NEAR(x.logdet[0], 2.0 * std::log1p(-c * c),
                dtype == kFloat64 ? 1e-12 : 1e-5);
  }
}

TEST(Sylvester, InvalidOptionsAreErrors) {
  EXPECT_TRUE(Options(3, SylvesterQ::kOrthogonal, 2).Validate().ok());
  EXPECT_FALSE(Options(3, SylvesterQ::kOrthogonal, 4).Validate().ok());
  EXPECT_FALSE(Options(3, SylvesterQ::kTriangular, 2).Validate().ok());
  EXPECT_FALSE(Options(0, SylvesterQ::kHouseholder).Validate().ok());
  Rng rng(1);
  EXPECT_EQ(Sylvester::Create(Options(3, SylvesterQ::kOrthogonal, 4), rng)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Householder, ReflectionsAreOrthogonalAndVolumePreserving) {
  auto f = Householder::Create(
      Tensor::FromVector({2, 3}, {1.0, 2.0, -2.0, 0.5, 0.0, 1.0}));
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor h = (*f)->Matrix();
  EXPECT_LT(MaxOrthoError(h), 1e-12);
  // The documented order, by hand: Matrix() = H_2 H_1, H = I - 2 v v' / |v|^2.
  auto reflection = [](const Eigen::Vector3d& v) -> Eigen::Matrix3d {
    return Eigen::Matrix3d::Identity() - 2.0 * v * v.transpose() / v.dot(v);
  };
  const Eigen::Matrix3d hand = reflection(Eigen::Vector3d(0.5, 0.0, 1.0)) *
                               reflection(Eigen::Vector3d(1.0, 2.0, -2.0));
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_NEAR(h[i * 3 + j], hand(i, j), 1e-15) << i << "," << j;
  // H_1 H_1 = I: a single reflection maps its v to -v.
  auto one = Householder::Create(Tensor::FromVector({1, 3}, {1.0, 2.0, -2.0}));
  ASSERT_TRUE(one.ok());
  FlowResult r = (*one)->Inverse(Tensor::FromVector({1, 3}, {1.0, 2.0, -2.0}));
  EXPECT_NEAR(r.value[0], -1.0, 1e-15);
  EXPECT_NEAR(r.value[2], 2.0, 1e-15);
  // Inverse is x = H_2 H_1 z (the hand-built product, not Matrix(), which
  // shares ReflectRows with Inverse), Forward z = H^T x, log-dets zero.
  Tensor z = Tensor::FromVector({2, 3}, {0.3, -1.0, 2.0, 1.5, 0.2, -0.7});
  FlowResult x = (*f)->Inverse(z);
  for (int64_t n = 0; n < 2; ++n) {
    const Eigen::Vector3d hz =
        hand * Eigen::Vector3d(z[3 * n], z[3 * n + 1], z[3 * n + 2]);
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_NEAR(x.value[3 * n + i], hz(i), 1e-14) << n << "," << i;
  }
  FlowResult back = (*f)->Forward(x.value);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(back.value[i], z[i], 1e-14);
  EXPECT_EQ(x.logdet.ToVector(), std::vector<double>({0.0, 0.0}));
  EXPECT_FALSE(Householder::Create(Tensor::Zeros({1, 3})).ok());
  EXPECT_FALSE(Householder::Create(Tensor::Ones({3})).ok());
  Rng rng(2);
  EXPECT_FALSE(Householder::Create(3, 0, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows
