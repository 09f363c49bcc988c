// Planar and radial flows (and composition, permutation, inversion) through
// the harness, plus the invertibility constraints the harness cannot see.
#include <cmath>
#include <memory>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/invert.h"
#include "flows/permute.h"
#include "flows/planar.h"
#include "flows/radial.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {
using testing::FlowCase;

std::shared_ptr<Planar> MakePlanar(int64_t d, Rng& r) {
  return Planar::Create(d, r).value();
}
std::shared_ptr<Radial> MakeRadial(int64_t d, Rng& r) {
  return Radial::Create(d, r).value();
}
std::shared_ptr<Flow> Planar1(Rng& r) { return MakePlanar(1, r); }
std::shared_ptr<Flow> Planar2(Rng& r) { return MakePlanar(2, r); }
std::shared_ptr<Flow> Radial2(Rng& r) { return MakeRadial(2, r); }
std::shared_ptr<Flow> Radial5(Rng& r) { return MakeRadial(5, r); }
std::shared_ptr<Flow> PlanarStack(Rng& r) {  // planar, reverse, radial, ...
  auto s = std::make_shared<Sequential>();
  for (int k = 0; k < 3; ++k) {
    s->Add(MakePlanar(2, r)).Add(Reverse(2).value());
    s->Add(MakeRadial(2, r));
  }
  return s;
}
std::shared_ptr<Flow> Permute4(Rng& r) {
  return RandomPermutation(4, r).value();
}
std::shared_ptr<Flow> InvertedPlanar(Rng& r) {
  return std::make_shared<Invert>(MakePlanar(3, r));
}

FLOWTAPE_FLOW_CASES(
    PlanarRadial, FlowCase("planar_1d", Planar1, {1}).Perturb(0.5),
    FlowCase("planar_2d", Planar2, {2}).Perturb(0.5),
    FlowCase("radial_2d", Radial2, {2}).Perturb(0.5),
    FlowCase("radial_5d", Radial5, {5}).Perturb(0.5),
    FlowCase("planar_radial_stack", PlanarStack, {2}).Perturb(0.3),
    FlowCase("random_permutation", Permute4, {4}),
    FlowCase("inverted_planar", InvertedPlanar, {3}).Perturb(0.5));

TEST(Planar, ReparametrisationKeepsWuAboveMinusOne) {
  // Free parameters with w.u = -10 (not invertible as given): u^ fixes it.
  Rng rng(1);
  auto keep = MakePlanar(3, rng);
  Planar& f = *keep;
  auto params = f.NamedParameters();
  Tensor w = params[0].second, u = params[1].second;
  ASSERT_EQ(params[1].first, "u");
  for (int i = 0; i < 3; ++i)
    u.mutable_data<double>()[i] =
        -10.0 * w[i] / (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]);
  Tensor uh = f.u_hat();
  double wuh = 0;
  for (int i = 0; i < 3; ++i) wuh += w[i] * uh[i];
  EXPECT_GT(wuh, -1.0);
  EXPECT_NEAR(wuh, -1.0 + std::log1p(std::exp(-10.0)), 1e-12);
  EXPECT_FALSE(f.analytic_inverse());
}

TEST(Planar, ExplicitParameters) {
  Rng rng(3);
  Tensor w = Tensor::FromVector({2}, {1.0, 2.0});
  auto bad = Planar::Create(w, Tensor::FromVector({2}, {-1.0, 0.0}), 0.3);
  ASSERT_FALSE(bad.ok());  // w.u = -1: on the boundary, not invertible
  EXPECT_NE(bad.status().message().find("w.u = -1"), std::string::npos)
      << bad.status();
  EXPECT_FALSE(Planar::Create(Tensor::Zeros({2}), Tensor::Ones({2}), 0).ok());
  EXPECT_FALSE(Planar::Create(w, Tensor::Ones({3}), 0).ok());
  // Near the boundary: w.u = -0.999, the numeric inverse still round-trips.
  Tensor u = Tensor::FromVector({2}, {-0.999, 0.0});
  auto f = Planar::Create(w, u, 0.3);
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor uh = (*f)->u_hat();
  EXPECT_NEAR(uh[0], -0.999, 1e-12);
  EXPECT_NEAR(uh[1], 0.0, 1e-12);
  // Closed-form generative map at one point: x = z + u tanh(w.z + b).
  Tensor z = Tensor::FromVector({3, 2}, {0.2, -0.25, 3.0, 1.0, -4.0, 0.5});
  FlowResult x = (*f)->Inverse(z);
  const double t = std::tanh(0.2 - 0.5 + 0.3);
  EXPECT_NEAR(x.value[0], 0.2 - 0.999 * t, 1e-15);
  EXPECT_NEAR(x.logdet[0], std::log(1 - 0.999 * (1 - t * t)), 1e-12);
  FlowResult back = (*f)->Forward(x.value);
  for (int64_t i = 0; i < z.numel(); ++i)
    EXPECT_NEAR(back.value[i], z[i], 1e-9);
  EXPECT_FALSE(Planar::Create(0, rng).ok());
}

TEST(Planar, NonFiniteInputIsReportedInTheStatus) {
  Rng rng(2);
  auto f = MakePlanar(2, rng);
  Tensor x = Tensor::FromVector({2, 2}, {0.5, 1.0, std::nan(""), 0.0});
  FlowResult r = f->Forward(x);
  ASSERT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("sample 1"), std::string::npos) << r.status;
  EXPECT_TRUE(std::isnan(r.value[0]) && std::isnan(r.logdet[0]));
  EXPECT_TRUE(f->Forward(Tensor::Ones({2, 2})).status.ok());
}

TEST(Radial, ExplicitParameters) {
  Tensor z0 = Tensor::FromVector({2}, {0.5, -0.5});
  EXPECT_FALSE(Radial::Create(z0, 0.0, 1.0).ok());
  auto bad = Radial::Create(z0, 2.0, -2.0);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("beta"), std::string::npos);
  // Closed-form value: x = z + beta (z - z0) / (alpha + r).
  auto f = Radial::Create(z0, 2.0, -1.9);
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor z = Tensor::FromVector({2, 2}, {3.5, 3.5, 0.5, -0.5});
  FlowResult x = (*f)->Inverse(z);
  EXPECT_NEAR(x.value[0], 3.5 - 1.9 * 3.0 / 7.0, 1e-14);  // r = 5
  EXPECT_NEAR(x.value[1], 3.5 - 1.9 * 4.0 / 7.0, 1e-14);
  EXPECT_NEAR(x.logdet[0], std::log(1 - 1.9 / 7) + std::log(1 - 1.9 * 2.0 / 49),
              1e-14);
  // At the centre the map is the identity with logdet 2 log(1 + beta/alpha).
  EXPECT_NEAR(x.value[2], 0.5, 1e-15);
  EXPECT_NEAR(x.logdet[1], 2 * std::log(1 - 1.9 / 2.0), 1e-13);
  FlowResult back = (*f)->Forward(x.value);
  for (int64_t i = 0; i < z.numel(); ++i)
    EXPECT_NEAR(back.value[i], z[i], 1e-13);
  Rng rng(4);
  EXPECT_FALSE(Radial::Create(0, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows
