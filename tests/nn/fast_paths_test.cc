// The autodiff core's performance paths agree with the reference rules:
// fused plain-backward kernels (mul, tanh), the scalar adjoint a full Sum
// hands on, gradient-buffer adoption in Backward(), the vectorised tanh and
// broadcast loops, and the per-thread buffer cache. The reference is the
// create_graph=true sweep, which runs every rule through the generic ops.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"

namespace flowtape {
namespace {

using Fn = Tensor (*)(const std::vector<Tensor>&);

// Gradients of f at xs by the plain sweep and by the create_graph sweep.
void BothSweeps(Fn f, const std::vector<Tensor>& xs, std::vector<Tensor>* plain,
                std::vector<Tensor>* graph) {
  TapeScope scope;
  *plain = Grad({f(xs)}, xs);
  std::vector<Tensor> g = Grad({f(xs)}, xs, {}, /*create_graph=*/true);
  graph->clear();
  for (const Tensor& t : g) graph->push_back(t.Detach());
}

std::vector<Tensor> Params(const std::vector<Shape>& shapes, uint64_t seed) {
  Rng rng(seed);
  std::vector<Tensor> ps;
  for (const Shape& s : shapes)
    ps.push_back(Tensor::Randn(s, rng).set_requires_grad(true));
  return ps;
}

// Equal up to rounding: a fused kernel may evaluate g (1 - y^2) with one
// FMA where the op-by-op rule rounds each product (GCC contracts a * b + c
// in C++ by default).
void ExpectSameUpToRounding(const std::vector<Tensor>& a,
                            const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].shape(), b[i].shape()) << i;
    for (int64_t k = 0; k < a[i].numel(); ++k)
      EXPECT_NEAR(a[i][k], b[i][k], 1e-15 * std::max(1.0, std::fabs(b[i][k])))
          << i << " " << k;
  }
}

TEST(FastPaths, PlainSweepMatchesCreateGraphSweep) {
  const std::vector<std::pair<Fn, std::vector<Shape>>> cases = {
      // scalar adjoint into the fused mul kernel
      {[](const std::vector<Tensor>& v) { return Sum(v[0] * v[1]); },
       {{5, 7}, {5, 7}}},
      // scalar adjoint into nodes that must expand it (tanh, add, leaf)
      {[](const std::vector<Tensor>& v) { return Sum(Tanh(v[0] + v[1])); },
       {{4, 3}, {3}}},
      {[](const std::vector<Tensor>& v) { return Sum(v[0]); }, {{2, 3}}},
      {[](const std::vector<Tensor>& v) { return Mean(Square(v[0] * v[1])); },
       {{3, 4}, {3, 4}}},
      // mul with one broadcast side, chains, mul feeding a reduction twice
      {[](const std::vector<Tensor>& v) {
         Tensor p = v[0] * v[1];
         return Sum(p * v[0]) + Sum(Tanh(p)) * Sum(v[1]);
       },
       {{3, 4}, {3, 4}}},
      {[](const std::vector<Tensor>& v) { return Sum(v[0] * v[1]); },
       {{3, 4}, {4}}},
      {[](const std::vector<Tensor>& v) { return Sum(Sum(v[0], 1) * v[1]); },
       {{3, 4}, {3}}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    std::vector<Tensor> xs = Params(cases[k].second, k + 1), plain, graph;
    BothSweeps(cases[k].first, xs, &plain, &graph);
    SCOPED_TRACE(k);
    ExpectSameUpToRounding(plain, graph);
  }
}

TEST(FastPaths, ZeroAdjointStaysZeroInFusedMul) {
  // d/da of sum(w * (a * b)) with w = 0 where b = inf: GradMul semantics.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor a = Tensor::FromVector({3}, {1, 2, 3}).set_requires_grad(true);
  Tensor b = Tensor::FromVector({3}, {inf, 1, 2}).set_requires_grad(true);
  Tensor w = Tensor::FromVector({3}, {0, 1, 1});
  TapeScope scope;
  std::vector<Tensor> g = Grad({Sum(w * (a * b))}, {a, b});
  EXPECT_EQ(g[0][0], 0.0);
  EXPECT_EQ(g[0][1], 1.0);
  EXPECT_EQ(g[1][2], 3.0);
  // Zero seed through the scalar-adjoint kernel.
  g = Grad({Sum(a * b)}, {a, b}, {Tensor::Scalar(0.0)});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(g[0][i], 0.0);
}

TEST(FastPaths, BackwardAdoptsOnlyUnsharedBuffers) {
  // x + y hands the same adjoint buffer to both leaves: each must get its own
  // gradient storage, and accumulation must not leak between them.
  std::vector<Tensor> p = Params({{4}, {4}}, 9);
  Tensor x = p[0], y = p[1];
  Backward(Sum(Tanh(x + y)));
  Tape::Get().Reset();
  ASSERT_NE(x.grad().data<double>(), y.grad().data<double>());
  std::vector<double> gx = x.grad().ToVector();
  EXPECT_EQ(gx, y.grad().ToVector());
  Backward(Sum(x * 3.0));
  Tape::Get().Reset();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(x.grad()[i], gx[i] + 3.0);
    EXPECT_EQ(y.grad()[i], gx[i]);
  }
  // A user-provided seed is never adopted (the caller still owns it).
  Tensor seed = Tensor::Full({4}, 2.0);
  x.ZeroGrad();
  Backward(x * 1.0, seed);
  Tape::Get().Reset();
  EXPECT_NE(x.grad().data<double>(), seed.data<double>());
  x.grad().mutable_data<double>()[0] = 99.0;
  EXPECT_EQ(seed[0], 2.0);
}

double UlpDistance(double a, double b) {
  int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  if (ia < 0) ia = std::numeric_limits<int64_t>::min() - ia;
  if (ib < 0) ib = std::numeric_limits<int64_t>::min() - ib;
  return static_cast<double>(ia > ib ? ia - ib : ib - ia);
}

TEST(FastPaths, TanhWithinTwoUlpOfLibm) {
  std::vector<double> xs;
  for (double e = -12; e <= 1.6; e += 0.001) {
    xs.push_back(std::pow(10.0, e));
    xs.push_back(-std::pow(10.0, e));
  }
  for (double v : {0.625, -0.625, std::nextafter(0.625, 1.0), 19.0, 40.0})
    xs.push_back(v);
  Tensor x = Tensor::FromVector({static_cast<int64_t>(xs.size())}, xs);
  Tensor y = Tanh(x);
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    worst = std::max(worst, UlpDistance(y[i], std::tanh(xs[i])));
  EXPECT_LE(worst, 2.0);
  const double inf = std::numeric_limits<double>::infinity();
  Tensor s = Tanh(Tensor::FromVector({5}, {0.0, -0.0, inf, -inf, NAN}));
  EXPECT_FALSE(std::signbit(s[0]));
  EXPECT_TRUE(std::signbit(s[1]));
  EXPECT_EQ(s[1], 0.0);
  EXPECT_EQ(s[2], 1.0);
  EXPECT_EQ(s[3], -1.0);
  EXPECT_TRUE(std::isnan(s[4]));
}

TEST(FastPaths, BroadcastLoopsMatchIndexArithmetic) {
  Rng rng(4);
  Tensor m = Tensor::Randn({2, 3, 4}, rng);
  const std::vector<Shape> others = {{4}, {3, 1}, {2, 1, 4}, {1}, {2, 3, 1}};
  for (const Shape& s : others) {
    Tensor o = Tensor::Randn(s, rng);
    for (bool swap : {false, true}) {
      Tensor r = swap ? o - m : m - o;
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j)
          for (int64_t k = 0; k < 4; ++k) {
            // index of o under NumPy broadcasting (o right-aligned)
            int64_t idx[3] = {i, j, k}, flat = 0;
            for (int d = 0; d < s.rank(); ++d) {
              const int axis = 3 - s.rank() + d;
              flat = flat * s[d] + (s[d] == 1 ? 0 : idx[axis]);
            }
            const double mv = m[(i * 3 + j) * 4 + k], ov = o[flat];
            EXPECT_EQ(r[(i * 3 + j) * 4 + k], swap ? ov - mv : mv - ov);
          }
    }
  }
  Tensor f = BroadcastTo(Tensor::Scalar(2.5), Shape{3, 2});
  EXPECT_EQ(f.ToVector(), std::vector<double>(6, 2.5));
}

TEST(FastPaths, BuffersFreedOnOtherThreadsAndReusedSafely) {
  std::vector<Tensor> made;
  std::thread t([&] {
    Rng rng(1);
    for (int i = 0; i < 8; ++i) made.push_back(Tensor::Randn({64, 64}, rng));
    { Tensor tmp = Tensor::Ones({64, 64}); }  // into that thread's cache
  });
  t.join();      // the thread's cache is gone; its tensors live on
  made.clear();  // freed into this thread's cache
  for (int i = 0; i < 20; ++i) {
    Tensor z = Tensor::Zeros({64, 64});
    for (int64_t k = 0; k < z.numel(); ++k) ASSERT_EQ(z[k], 0.0);
  }
}

}  // namespace
}  // namespace flowtape
