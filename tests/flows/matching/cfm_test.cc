// The conditional flow-matching loss and its couplings:
//  - Gaussian to Gaussian on the OT and the VP path: the closed-form
//    marginal field u_t(x) = E[u_t | x_t = x] minimises the CFM loss (its
//    derivative along each perturbation direction is 0 to Monte Carlo
//    error, every perturbation raises it) and the loss there equals
//    d int_0^1 Var(u_t | x_t) dt;
//  - per-sample times give the nets' row-by-row values;
//  - OT couplings lower the transport cost and the crossings of the
//    straight paths of a minibatch; contexts couple within their group;
//    a Sinkhorn plan that did not converge is an error.
#include "flows/matching/cfm.h"

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/dynamics.h"
#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

// Data N(m, s^2 I) in 2-D, noise N(0, I).
constexpr double kMean[2] = {1.5, -0.5};
constexpr double kScale = 0.5;

// An affine path x_t = a x1 + b x0, u_t = a' x1 + b' x0, written out here
// independently of path.cc.
struct Coefficients {
  double a, b, da, db;
};
using Schedule = std::function<Coefficients(double t)>;

constexpr double kOtSigmaMin = 0.1;
Coefficients OtSchedule(double t) {
  return {t, 1 - (1 - kOtSigmaMin) * t, 1.0, -(1 - kOtSigmaMin)};
}

// VP: with s = 1 - t, T(s) = b0 s + (b1 - b0) s^2 / 2,
//   a = exp(-T(s) / 2),  a' = da/dt = a T'(s) / 2,
//   b = sqrt(1 - (1 - m^2) a^2),  b' = -(1 - m^2) a a' / b.
constexpr double kVpBetaMin = 0.1, kVpBetaMax = 20.0, kVpSigmaMin = 1e-3;
Coefficients VpSchedule(double t) {
  const double s = 1 - t;
  const double big_t = kVpBetaMin * s + 0.5 * (kVpBetaMax - kVpBetaMin) * s * s;
  const double beta = kVpBetaMin + (kVpBetaMax - kVpBetaMin) * s;
  const double a = std::exp(-0.5 * big_t), da = 0.5 * a * beta;
  const double keep = 1 - kVpSigmaMin * kVpSigmaMin;
  const double b = std::sqrt(1 - keep * a * a);
  return {a, b, da, -keep * a * da / b};
}

// x_t = a x1 + b x0 is N(a m, v I), v = a^2 s^2 + b^2, and (x_t, u_t) are
// jointly Gaussian with Cov(u_t, x_t) = (a' a s^2 + b' b) I, so
//   u_t(x) = E[u_t | x_t = x] = a' m + k (x - a m),  k = (a' a s^2 + b' b) / v,
//   Var(u_t | x_t) = (a'^2 s^2 + b'^2 - (a' a s^2 + b' b)^2 / v) I.
// MarginalField is u_t plus delta * g with g one of
//   0: (1, -0.5),  1: x,  2: t x.
class MarginalField : public cnf::CnfDynamics {
 public:
  MarginalField(Schedule schedule, double delta, int direction)
      : schedule_(std::move(schedule)), delta_(delta), direction_(direction) {}
  Tensor operator()(double, const Tensor&) const override { return Tensor(); }
  Tensor operator()(const Tensor& t, const Tensor& x,
                    const Tensor&) const override {
    const int64_t n = x.dim(0);
    Tensor out = Tensor::Zeros({n, 2});
    double* o = out.mutable_data<double>();
    for (int64_t i = 0; i < n; ++i) {
      const double ti = t[i];
      const auto [a, b, da, db] = schedule_(ti);
      const double v = a * a * kScale * kScale + b * b;
      const double k = (da * a * kScale * kScale + db * b) / v;
      for (int j = 0; j < 2; ++j) {
        const double xj = x[2 * i + j];
        double g = direction_ == 0 ? (j == 0 ? 1.0 : -0.5)
                                   : (direction_ == 1 ? xj : ti * xj);
        o[2 * i + j] = da * kMean[j] + k * (xj - a * kMean[j]) + delta_ * g;
      }
    }
    return out;
  }
  int64_t dim() const override { return 2; }

 private:
  Schedule schedule_;
  double delta_;
  int direction_;
};

// d int_0^1 tr Var(u_t | x_t) / d dt, in s = 1 - t = e^w (ds = s dw) by
// Simpson over w in [log 1e-14, 0]: the VP variance grows like
// 1 / (s + m^2 / b0) as s -> 0, a spike of width ~1e-5 a uniform grid in t
// would miss; the part s < 1e-14 is below 1e-14 / m^2.
double MinimumLoss(const Schedule& schedule) {
  const int m = 4000;
  const double w0 = std::log(1e-14);
  double total = 0;
  for (int i = 0; i <= m; ++i) {
    const double w = w0 * (1 - static_cast<double>(i) / m), s = std::exp(w);
    const auto [a, b, da, db] = schedule(1 - s);
    const double s2 = kScale * kScale, v = a * a * s2 + b * b;
    const double c = da * a * s2 + db * b;
    const double f = da * da * s2 + db * db - c * c / v;
    total += s * f * (i == 0 || i == m ? 1 : (i % 2 ? 4 : 2));
  }
  return 2 * total * (-w0) / (3.0 * m);
}

void ExpectMarginalFieldIsTheMinimum(const ProbabilityPath& path,
                                     const Schedule& schedule) {
  const int64_t n = 200000;
  Rng rng(3);
  Tensor x0 = Tensor::Randn({n, 2}, rng);
  Tensor x1 = Tensor::Randn({n, 2}, rng) * kScale +
              Tensor::FromVector({1, 2}, {kMean[0], kMean[1]});
  Tensor t = Tensor::Rand({n, 1}, rng);
  NoGradScope no_grad;
  auto loss = [&](double delta, int dir) {
    return CfmLoss(MarginalField(schedule, delta, dir), path, x0, x1, t).item();
  };
  const double best = loss(0, 0);
  // Monte Carlo error of the mean: the per-row losses' spread / sqrt(n).
  PathSample s = path.Sample(x0, x1, t);
  Tensor residual =
      MarginalField(schedule, 0, 0)(t, s.x, Tensor()) - s.velocity;
  Tensor rows = Sum(Square(residual), 1);
  const double sd = std::sqrt(Mean(Square(rows - best)).item() / n);
  EXPECT_NEAR(best, MinimumLoss(schedule), 5 * sd) << "sd " << sd;
  for (int dir = 0; dir < 3; ++dir) {
    // dL/d delta at 0 = 2 mean_i (u_t(x_i) - u_i) . g_i: zero in expectation
    // at the minimiser, so within 5 of its Monte Carlo standard errors.
    Tensor g = MarginalField(schedule, 1, dir)(t, s.x, Tensor()) -
               MarginalField(schedule, 0, dir)(t, s.x, Tensor());
    Tensor terms = 2 * Sum(residual * g, 1);
    const double slope = Mean(terms).item();
    const double slope_sd = std::sqrt(Mean(Square(terms - slope)).item() / n);
    EXPECT_LT(std::fabs(slope), 5 * slope_sd)
        << "direction " << dir << ": slope " << slope << ", sd " << slope_sd;
    // L(delta) = best + slope delta + mean|g|^2 delta^2 exactly (one sample).
    const double curvature = Mean(Sum(Square(g), 1)).item();
    const double h = 0.2, up = loss(h, dir), down = loss(-h, dir);
    EXPECT_NEAR(up, best + slope * h + curvature * h * h, 1e-9 * up) << dir;
    EXPECT_GT(up, best) << dir;
    EXPECT_GT(down, best) << dir;
  }
}

TEST(CfmLossTest, MarginalFieldIsTheMinimumOnTheOtPath) {
  ExpectMarginalFieldIsTheMinimum(
      *AffinePath::OptimalTransport(kOtSigmaMin).value(), OtSchedule);
}

TEST(CfmLossTest, MarginalFieldIsTheMinimumOnTheVpPath) {
  ExpectMarginalFieldIsTheMinimum(
      *AffinePath::VariancePreserving(kVpBetaMin, kVpBetaMax, kVpSigmaMin)
           .value(),
      VpSchedule);
}

// t [N, 1] gives, row by row, what a scalar t gives.
TEST(CfmLossTest, PerSampleTimesMatchScalarCalls) {
  Rng rng(4);
  for (int64_t k : {0, 2}) {
    std::vector<std::shared_ptr<cnf::CnfDynamics>> nets = {
        cnf::ConcatSquashNet::Create(3, {5, 5}, nn::Activation::kTanh, rng, k)
            .value(),
        cnf::TimeMlp::Create(3, {5}, nn::Activation::kSoftplus, rng, k)
            .value()};
    Tensor z = Tensor::Randn({4, 3}, rng);
    Tensor c = k > 0 ? Tensor::Randn({4, k}, rng) : Tensor();
    Tensor t = Tensor::Rand({4, 1}, rng);
    for (const auto& net : nets) {
      Tensor all = (*net)(t, z, c);
      for (int64_t i = 0; i < 4; ++i) {
        Tensor one = (*net)(Tensor::Scalar(t[i]), Narrow(z, 0, i, 1),
                            k > 0 ? Narrow(c, 0, i, 1) : Tensor());
        for (int64_t j = 0; j < 3; ++j)
          EXPECT_NEAR(all[3 * i + j], one[j], 1e-14) << k;
      }
    }
  }
}

// Eight Gaussians on a circle of radius 4 (sd 0.5).
Tensor EightGaussians(int64_t n, Rng& rng) {
  Tensor x = Tensor::Zeros({n, 2});
  double* p = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    const double a = 2 * M_PI * rng.UniformInt(8) / 8;
    p[2 * i] = 4 * std::cos(a) + 0.5 * rng.Normal();
    p[2 * i + 1] = 4 * std::sin(a) + 0.5 * rng.Normal();
  }
  return x;
}

double MeanCost(const Tensor& x0, const Tensor& x1,
                const std::vector<IndexPair>& pairs) {
  double total = 0;
  for (const IndexPair& p : pairs)
    for (int k = 0; k < 2; ++k) {
      const double d = x0[2 * p.i + k] - x1[2 * p.j + k];
      total += d * d;
    }
  return total / pairs.size();
}

// Pairs of segments x0_i -> x1_j that cross.
int Crossings(const Tensor& x0, const Tensor& x1,
              const std::vector<IndexPair>& pairs) {
  auto orient = [](double ax, double ay, double bx, double by, double cx,
                   double cy) {
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);
  };
  int count = 0;
  for (size_t a = 0; a < pairs.size(); ++a)
    for (size_t b = a + 1; b < pairs.size(); ++b) {
      const double p1x = x0[2 * pairs[a].i], p1y = x0[2 * pairs[a].i + 1];
      const double q1x = x1[2 * pairs[a].j], q1y = x1[2 * pairs[a].j + 1];
      const double p2x = x0[2 * pairs[b].i], p2y = x0[2 * pairs[b].i + 1];
      const double q2x = x1[2 * pairs[b].j], q2y = x1[2 * pairs[b].j + 1];
      if (orient(p1x, p1y, q1x, q1y, p2x, p2y) *
                  orient(p1x, p1y, q1x, q1y, q2x, q2y) <
              0 &&
          orient(p2x, p2y, q2x, q2y, p1x, p1y) *
                  orient(p2x, p2y, q2x, q2y, q1x, q1y) <
              0)
        ++count;
    }
  return count;
}

TEST(CouplingTest, OtPairsAreCheaperAndCrossLess) {
  Rng rng(5);
  const int64_t n = 256;
  Tensor x0 = Tensor::Randn({n, 2}, rng), x1 = EightGaussians(n, rng);
  FlowMatchingOptions o;
  auto independent = PairMinibatch(x0, x1, Tensor(), o, rng).value();
  o.coupling = CouplingKind::kExactOt;
  auto exact = PairMinibatch(x0, x1, Tensor(), o, rng).value();
  o.coupling = CouplingKind::kSinkhorn;
  o.sinkhorn_epsilon = 0.01;
  auto sinkhorn = PairMinibatch(x0, x1, Tensor(), o, rng).value();
  ASSERT_EQ(exact.size(), n);
  ASSERT_EQ(sinkhorn.size(), n);
  const double c_ind = MeanCost(x0, x1, independent);
  const double c_exact = MeanCost(x0, x1, exact);
  const double c_sink = MeanCost(x0, x1, sinkhorn);
  EXPECT_LT(c_exact, 0.5 * c_ind) << c_exact << " vs " << c_ind;
  EXPECT_LE(c_exact, c_sink);
  EXPECT_LT(c_sink, 0.6 * c_ind) << c_sink << " vs " << c_ind;
  const int x_ind = Crossings(x0, x1, independent);
  const int x_exact = Crossings(x0, x1, exact);
  EXPECT_LT(x_exact * 10, x_ind) << x_exact << " vs " << x_ind;
  // The assignment is a permutation: the data marginal is kept.
  std::vector<int> seen(n, 0);
  for (const IndexPair& p : exact) ++seen[p.j];
  for (int64_t j = 0; j < n; ++j) EXPECT_EQ(seen[j], 1);
}

TEST(CouplingTest, ContextsCoupleWithinTheirGroup) {
  Rng rng(6);
  const int64_t n = 40;
  Tensor x0 = Tensor::Randn({n, 2}, rng), x1 = EightGaussians(n, rng);
  std::vector<double> label(n);
  for (int64_t i = 0; i < n; ++i) label[i] = i % 3;
  Tensor c = Tensor::FromVector({n, 1}, label);
  FlowMatchingOptions o;
  o.coupling = CouplingKind::kExactOt;
  auto pairs = PairMinibatch(x0, x1, c, o, rng).value();
  ASSERT_EQ(pairs.size(), n);
  int moved = 0;
  for (const IndexPair& p : pairs) {
    EXPECT_EQ(label[p.i], label[p.j]);
    moved += p.i != p.j;
  }
  EXPECT_GT(moved, 0);
  // All-distinct contexts: every group is one row.
  Tensor distinct = Tensor::Randn({n, 1}, rng);
  const auto singles = PairMinibatch(x0, x1, distinct, o, rng).value();
  for (const IndexPair& p : singles) EXPECT_EQ(p.i, p.j);
}

TEST(CouplingTest, ErrorsAreStatuses) {
  Rng rng(7);
  FlowMatchingOptions o;
  o.coupling = CouplingKind::kExactOt;
  Tensor big = Tensor::Randn({513, 2}, rng);
  auto r = PairMinibatch(big, big, Tensor(), o, rng);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  o.sinkhorn_epsilon = 0;
  EXPECT_FALSE(o.Validate().ok());
  EXPECT_FALSE(ParseCouplingKind("ot").ok());
  EXPECT_EQ(ParseCouplingKind("sinkhorn").value(), CouplingKind::kSinkhorn);

  auto net =
      cnf::ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng).value();
  auto fm =
      FlowMatching::Create(net, AffinePath::OptimalTransport().value()).value();
  EXPECT_FALSE(fm->Loss(Tensor::Randn({4, 3}, rng), Tensor(), rng).ok());
  EXPECT_FALSE(
      fm->Loss(Tensor::Randn({4, 2}, rng), Tensor::Randn({4, 1}, rng), rng)
          .ok());
  Tensor nan = Tensor::Full({4, 2}, NAN);
  FlowMatchingOptions exact;
  exact.coupling = CouplingKind::kExactOt;
  auto fm_ot =
      FlowMatching::Create(net, AffinePath::OptimalTransport().value(), exact)
          .value();
  EXPECT_FALSE(fm_ot->Loss(nan, Tensor(), rng).ok());
  EXPECT_TRUE(fm_ot->Loss(Tensor::Randn({4, 2}, rng), Tensor(), rng).ok());
}

// A Sinkhorn plan off its marginals is never used: with a budget in which
// it cannot converge (two iterations at eps = 1e-3 max C) pairing fails,
// with a sufficient one the same batch pairs.
TEST(CouplingTest, UnconvergedSinkhornIsAnError) {
  Rng rng(9);
  const int64_t n = 64;
  Tensor x0 = Tensor::Randn({n, 2}, rng), x1 = EightGaussians(n, rng);
  FlowMatchingOptions o;
  o.coupling = CouplingKind::kSinkhorn;
  o.sinkhorn_epsilon = 1e-3;
  o.sinkhorn_max_iters = 2;
  auto r = PairMinibatch(x0, x1, Tensor(), o, rng);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("did not converge"), std::string::npos)
      << r.status();
  auto net =
      cnf::ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng).value();
  auto fm = FlowMatching::Create(net, AffinePath::OptimalTransport().value(), o)
                .value();
  EXPECT_EQ(fm->Loss(x1, Tensor(), rng).status().code(),
            absl::StatusCode::kFailedPrecondition);
  o.sinkhorn_epsilon = 0.05;
  o.sinkhorn_max_iters = 100000;
  auto ok = PairMinibatch(x0, x1, Tensor(), o, rng);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), n);
}

// A float32 field trains on float64 data (the batch is converted).
TEST(FlowMatchingTest, Float32FieldOnFloat64Data) {
  Rng rng(8);
  auto net = cnf::ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng,
                                          /*context_dim=*/1)
                 .value();
  net->To(kFloat32);
  for (CouplingKind kind :
       {CouplingKind::kIndependent, CouplingKind::kExactOt}) {
    FlowMatchingOptions o;
    o.coupling = kind;
    auto fm =
        FlowMatching::Create(net, AffinePath::OptimalTransport().value(), o)
            .value();
    Tensor loss =
        fm->Loss(Tensor::Randn({8, 2}, rng), Tensor::Randn({8, 1}, rng), rng)
            .value();
    EXPECT_EQ(loss.dtype(), kFloat32);
    EXPECT_TRUE(std::isfinite(loss.item()));
  }
}

}  // namespace
}  // namespace flowtape::flows::matching
