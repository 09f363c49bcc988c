// Conditional paths: the target field is the time derivative of the path
// (central differences), the paper's closed forms, and argument checks.
#include "flows/matching/path.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/ops.h"
#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

std::vector<std::shared_ptr<AffinePath>> Paths() {
  return {AffinePath::OptimalTransport(0.1).value(),
          AffinePath::OptimalTransport(0.0).value(),
          AffinePath::VariancePreserving(0.1, 20.0, 1e-3).value(),
          AffinePath::VariancePreserving(1.0, 5.0, 0.2).value()};
}

Tensor Times(const std::vector<double>& t) {
  return Tensor::FromVector({static_cast<int64_t>(t.size()), 1}, t);
}

// u_t equals (x_{t+h} - x_{t-h}) / (2h) at interior times, for every path.
TEST(PathTest, TargetIsTheTimeDerivativeOfThePath) {
  Rng rng(1);
  const std::vector<double> ts{0.03, 0.2, 0.5, 0.77, 0.97};
  const int64_t n = ts.size(), d = 3;
  Tensor x0 = Tensor::Randn({n, d}, rng), x1 = Tensor::Randn({n, d}, rng);
  const double h = 1e-5;
  std::vector<double> up(ts), down(ts);
  for (int64_t i = 0; i < n; ++i) up[i] += h, down[i] -= h;
  for (const auto& path : Paths()) {
    PathSample s = path->Sample(x0, x1, Times(ts));
    Tensor fd = (path->Sample(x0, x1, Times(up)).x -
                 path->Sample(x0, x1, Times(down)).x) /
                (2 * h);
    for (int64_t i = 0; i < n * d; ++i)
      EXPECT_NEAR(s.velocity[i], fd[i], 1e-7 * (1 + std::fabs(fd[i])))
          << path->name() << " entry " << i;
    // The paper's form at a point: u_t(x_t | x1).
    Tensor field = path->ConditionalField(s.x, x1, Times(ts));
    for (int64_t i = 0; i < n * d; ++i)
      EXPECT_NEAR(field[i], s.velocity[i], 1e-10 * (1 + std::fabs(fd[i])))
          << path->name();
  }
}

TEST(PathTest, OptimalTransportClosedForm) {
  auto path = AffinePath::OptimalTransport(0.1).value();
  Rng rng(2);
  Tensor x0 = Tensor::Randn({3, 2}, rng), x1 = Tensor::Randn({3, 2}, rng);
  PathSample s = path->Sample(x0, x1, Times({0.0, 0.4, 1.0}));
  for (int64_t k = 0; k < 2; ++k) {
    EXPECT_DOUBLE_EQ(s.x[k], x0[k]);  // t = 0: noise
    EXPECT_NEAR(s.x[2 + k], (1 - 0.9 * 0.4) * x0[2 + k] + 0.4 * x1[2 + k],
                1e-15);
    EXPECT_NEAR(s.x[4 + k], 0.1 * x0[4 + k] + x1[4 + k], 1e-15);  // t = 1
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_NEAR(s.velocity[2 * i + k], x1[2 * i + k] - 0.9 * x0[2 * i + k],
                  1e-15);
  }
}

TEST(PathTest, VariancePreservingSchedule) {
  auto path = AffinePath::VariancePreserving(0.1, 20.0, 1e-3).value();
  for (double t : {0.0, 0.3, 0.9, 1.0}) {
    auto c = path->At(t);
    const double s = 1 - t;
    EXPECT_NEAR(c.alpha, std::exp(-0.5 * (0.1 * s + 9.95 * s * s)), 1e-15);
    EXPECT_NEAR(c.alpha * c.alpha + c.sigma * c.sigma,
                1 + 1e-6 * c.alpha * c.alpha, 1e-14);
  }
  EXPECT_NEAR(path->At(1.0).sigma, 1e-3, 1e-15);
  EXPECT_NEAR(path->At(0.0).alpha, std::exp(-0.5 * 10.05), 1e-15);
}

TEST(PathTest, BadParametersAreRejected) {
  EXPECT_FALSE(AffinePath::OptimalTransport(-0.1).ok());
  EXPECT_FALSE(AffinePath::OptimalTransport(1.0).ok());
  EXPECT_FALSE(AffinePath::VariancePreserving(0.0, 1.0).ok());
  EXPECT_FALSE(AffinePath::VariancePreserving(2.0, 1.0).ok());
  EXPECT_FALSE(AffinePath::VariancePreserving(0.1, 20.0, 0.0).ok());
  EXPECT_FALSE(AffinePath::VariancePreserving(0.1, INFINITY).ok());
}

}  // namespace
}  // namespace flowtape::flows::matching
