// Linear flow through the harness, and Infomax ICA: with a logistic base,
// maximum likelihood unmixes Laplace sources (Amari index near 0).
#include "flows/linear.h"

#include <cmath>
#include <cstdio>
#include <memory>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/ica.h"
#include "gtest/gtest.h"
#include "nn/optim.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {
using testing::FlowCase;

std::shared_ptr<Flow> Linear1(Rng&) { return LinearFlow::Create(1).value(); }
std::shared_ptr<Flow> Linear2(Rng&) { return LinearFlow::Create(2).value(); }
std::shared_ptr<Flow> Linear6(Rng&) { return LinearFlow::Create(6).value(); }

FLOWTAPE_FLOW_CASES(Linear, FlowCase("linear_1d", Linear1, {1}).Perturb(0.5),
                    FlowCase("linear_2d", Linear2, {2}).Perturb(0.5),
                    FlowCase("linear_6d", Linear6, {6}).Perturb(0.5));

TEST(Linear, AmariIndex) {
  // A scaled permutation scores 0; the all-ones matrix scores 1.
  EXPECT_EQ(AmariIndex(Tensor::FromVector({2, 2}, {0, -3, 0.5, 0})), 0.0);
  EXPECT_NEAR(AmariIndex(Tensor::Ones({3, 3})), 1.0, 1e-15);
}

TEST(Linear, InfomaxIcaUnmixesLaplaceSources) {
  const int64_t n = 2000, d = 3;
  Rng rng(1);
  Tensor s = LaplaceSources(n, d, rng);
  Tensor mix = Tensor::FromVector(
      {d, d}, {1.0, 0.6, -0.3, 0.4, 1.0, 0.5, 0.2, -0.7, 1.0});
  Tensor x = (MatMulT(s, mix, false, true) + 2.0).Detach();  // x = M s + 2
  EXPECT_GT(AmariIndex(mix), 0.2);  // mixed at the start (A = I)
  auto fit = FitInfomaxIca(x);
  ASSERT_TRUE(fit.ok()) << fit.status();
  const double amari = AmariIndex(MatMul(fit->unmixing, mix));
  std::printf("Infomax ICA: Amari index of A M after 400 Adam steps: %.4f\n",
              amari);
  EXPECT_LT(amari, 0.05);
  EXPECT_LT(fit->nll.back(), fit->nll.front() - 0.1);
  for (int j = 0; j < d; ++j) EXPECT_NEAR(fit->mean[j], 2.0, 0.15);
  // W = A^-1, and the sources are A (x - mean).
  Tensor aw = MatMul(fit->unmixing, fit->mixing);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j)
      EXPECT_NEAR(aw[i * d + j], i == j ? 1.0 : 0.0, 1e-12);
  EXPECT_EQ(fit->sources.shape(), Shape({n, d}));
}

TEST(Linear, MixtureBaseIcaUnmixesUniformAndLaplaceSources) {
  const int64_t n = 3000, d = 3;
  Rng rng(2);
  Tensor s = LaplaceSources(n, d, rng);
  for (int64_t i = 0; i < n; ++i)  // sources 0 and 2 uniform (sub-Gaussian)
    for (int64_t j : {0, 2})
      s.mutable_data<double>()[i * d + j] =
          std::sqrt(3.0) * (2 * rng.Uniform() - 1);
  Tensor mix = Tensor::FromVector(
      {d, d}, {1.0, 0.6, -0.3, 0.4, 1.0, 0.5, 0.2, -0.7, 1.0});
  Tensor x = MatMulT(s, mix, false, true).Detach();
  IcaOptions o;
  o.mixture_components = 3;
  o.steps = 600;
  auto fit = FitInfomaxIca(x, o);
  ASSERT_TRUE(fit.ok()) << fit.status();
  const double amari = AmariIndex(MatMul(fit->unmixing, mix));
  std::printf("mixture-base ICA (2 uniform + 1 Laplace): Amari index %.4f\n",
              amari);
  EXPECT_LT(amari, 0.05);
  // The logistic (super-Gaussian) prior of plain Infomax cannot do this.
  auto infomax = FitInfomaxIca(x);
  ASSERT_TRUE(infomax.ok());
  const double amari_infomax = AmariIndex(MatMul(infomax->unmixing, mix));
  std::printf("logistic-base Infomax on the same data: Amari index %.4f\n",
              amari_infomax);
  EXPECT_GT(amari_infomax, 0.1);
}

TEST(Linear, IcaRefusesBadData) {
  EXPECT_FALSE(FitInfomaxIca(Tensor::Zeros({2, 3})).ok());
  Tensor x = Tensor::Zeros({10, 2});
  x.mutable_data<double>()[7] = NAN;
  auto r = FitInfomaxIca(x);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("x[3, 1]"), std::string::npos)
      << r.status();
  IcaOptions o;
  o.lr = 0;
  EXPECT_FALSE(FitInfomaxIca(Tensor::Zeros({10, 2}), o).ok());
}

TEST(Linear, SingularOrBadMatricesAreRefused) {
  auto sing = LinearFlow::Create(Tensor::FromVector({2, 2}, {1, 2, 2, 4}));
  ASSERT_FALSE(sing.ok());
  EXPECT_NE(sing.status().message().find("singular"), std::string::npos);
  EXPECT_FALSE(LinearFlow::Create(Tensor::Zeros({2, 3})).ok());
  EXPECT_FALSE(LinearFlow::Create(Tensor::FromVector({1, 1}, {INFINITY})).ok());
  auto ok = LinearFlow::Create(Tensor::FromVector({2, 2}, {2, 1, 0, -3}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  FlowResult r = (*ok)->Forward(Tensor::FromVector({1, 2}, {1.0, 1.0}));
  EXPECT_NEAR(r.value[0], 3.0, 1e-15);
  EXPECT_NEAR(r.value[1], -3.0, 1e-15);
  EXPECT_NEAR(r.logdet[0], std::log(6.0), 1e-15);
  EXPECT_FALSE(LinearFlow::Create(0).ok());
}

TEST(Linear, Float32IcaUnmixesLaplaceSources) {
  // The same fit with float32 data (the model follows the data's dtype).
  const int64_t n = 2000, d = 3;
  Rng rng(1);
  Tensor s = LaplaceSources(n, d, rng);
  Tensor mix = Tensor::FromVector(
      {d, d}, {1.0, 0.6, -0.3, 0.4, 1.0, 0.5, 0.2, -0.7, 1.0});
  Tensor x = Cast(MatMulT(s, mix, false, true) + 2.0, kFloat32).Detach();
  auto fit = FitInfomaxIca(x);
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_EQ(fit->unmixing.dtype(), kFloat32);
  EXPECT_LT(AmariIndex(MatMul(Cast(fit->unmixing, kFloat64), mix)), 0.05);
}

}  // namespace
}  // namespace flowtape::flows
