// MADE: the autoregressive property from the autodiff Jacobian, for every
// ordering and degree assignment, plus full connectivity where allowed.
#include "flows/made.h"

#include <cmath>

#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"

namespace flowtape::flows {
namespace {

struct Case {
  Ordering ordering;
  HiddenDegrees degrees;
  int64_t dim;
};

class MadeTest : public ::testing::TestWithParam<Case> {};

TEST_P(MadeTest, AutoregressiveAndConnected) {
  const Case c = GetParam();
  Rng rng(3);
  MadeOptions o;
  o.dim = c.dim;
  o.hidden = {24, 24};
  o.params_per_dim = 3;
  o.context_dim = 2;
  o.ordering = c.ordering;
  o.hidden_degrees = c.degrees;
  o.activation = nn::Activation::kTanh;
  auto keep = Made::Create(o, rng).value();
  const Made& made = *keep;
  const int64_t d = c.dim, p = 3;
  Tensor x = Tensor::Randn({1, d}, rng);
  Tensor ctx = Tensor::Randn({1, 2}, rng);
  TapeScope scope;
  Tensor jx = Jacobian([&](const Tensor& v) { return made(v, ctx); }, x);
  Tensor jc = Jacobian([&](const Tensor& v) { return made(x, v); }, ctx);
  ASSERT_EQ(jx.shape(), Shape({d * p, d}));
  const auto& ord = made.order();
  for (int64_t i = 0; i < d; ++i)
    for (int64_t q = 0; q < p; ++q) {
      const int64_t row = i * p + q;
      for (int64_t j = 0; j < d; ++j) {
        const double v = jx[row * d + j];
        if (ord[j] >= ord[i]) {
          EXPECT_EQ(v, 0.0) << "out " << i << " in " << j;
        } else if (c.degrees == HiddenDegrees::kSequential) {
          // Cyclic degrees give every allowed path.
          EXPECT_NE(v, 0.0) << "out " << i << " in " << j;
        }
      }
      // The context reaches every output.
      EXPECT_NE(std::fabs(jc[row * 2]) + std::fabs(jc[row * 2 + 1]), 0.0);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Orderings, MadeTest,
    ::testing::Values(Case{Ordering::kNatural, HiddenDegrees::kSequential, 5},
                      Case{Ordering::kReversed, HiddenDegrees::kSequential, 5},
                      Case{Ordering::kRandom, HiddenDegrees::kSequential, 6},
                      Case{Ordering::kRandom, HiddenDegrees::kRandom, 6},
                      Case{Ordering::kNatural, HiddenDegrees::kRandom, 4},
                      Case{Ordering::kNatural, HiddenDegrees::kSequential, 1}));

TEST(MadeOrder, ExplicitOrderAndOrderings) {
  Rng rng(1);
  MadeOptions o;
  o.dim = 4;
  o.ordering = Ordering::kReversed;
  EXPECT_EQ(Made::Create(o, rng).value()->order(),
            (std::vector<int64_t>{4, 3, 2, 1}));
  o.order = {2, 4, 1, 3};
  EXPECT_EQ(Made::Create(o, rng).value()->order(), o.order);
  o.order.clear();
  o.ordering = Ordering::kRandom;
  std::vector<int64_t> ord = Made::Create(o, rng).value()->order();
  std::sort(ord.begin(), ord.end());
  EXPECT_EQ(ord, (std::vector<int64_t>{1, 2, 3, 4}));
  o.order = {1, 1, 2, 3};
  EXPECT_EQ(Made::Create(o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::flows
