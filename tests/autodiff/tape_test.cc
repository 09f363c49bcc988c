// The tape: stale tensors fail loudly, scopes rewind, no-grad records nothing,
// memory returns to its baseline after Reset(), Backward() accumulates into
// parameters, and two threads differentiate independently.
#include "autodiff/tape.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "gtest/gtest.h"

namespace flowtape {
namespace {

TEST(TapeDeath, StaleTensorAfterResetAborts) {
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y = Exp(p);
        Tape::Get().Reset();
        (void)y.data<double>();
      },
      "stale tensor");
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y = Exp(p);
        Tape::Get().Reset();
        Tensor z = y + 1.0;  // using it in an op
      },
      "stale tensor");
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y;
        {
          TapeScope scope;
          y = Exp(p);
        }
        (void)Sum(y).item();
      },
      "stale tensor");
}

// The per-tape node count has 40 bits: recording the 2^40-th node aborts
// instead of wrapping into the tape-id bits. The last nodes below still work.
TEST(TapeDeath, SerialOverflowAborts) {
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tape::Get().set_serial_count_for_testing((uint64_t{1} << 40) - 3);
        Tensor y = Exp(p);   // the leaf of p, then exp: serials 2^40 - 3, -2
        Tensor z = y * 2.0;  // a constant leaf, then mul: 2^40 - 1, abort
        if (std::fabs(z[0] - 2 * std::exp(1.0)) > 1e-15) std::abort();
      },
      "tape: 2\\^40 nodes recorded on this thread's tape; node serials "
      "overflow");
}

TEST(TapeDeath, MutatingATapeValueAborts) {
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y = Exp(p);
        y.mutable_data<double>()[0] = 1.0;
      },
      "mutable_data: tensor is a tape value \\(op 'exp'\\)");
}

TEST(Tape, DetachedValuesSurviveReset) {
  Tensor p = Tensor::FromVector({2}, {0.0, 1.0}).set_requires_grad(true);
  Tensor y = Exp(p);
  Tensor kept = y.Detach();
  const double item = Sum(y).item();
  Tape::Get().Reset();
  EXPECT_DOUBLE_EQ(kept[1], std::exp(1.0));
  EXPECT_DOUBLE_EQ(item, 1.0 + std::exp(1.0));
  EXPECT_EQ(Tape::Get().num_nodes(), 0);
}

TEST(Tape, NoGradScopeRecordsNothing) {
  Tape::Get().Reset();
  Tensor p = Tensor::Ones({3}).set_requires_grad(true);
  {
    NoGradScope no_grad;
    Tensor y = Sum(Tanh(p * 2.0));
    EXPECT_TRUE(y.is_constant());
    EXPECT_EQ(Tape::Get().num_nodes(), 0);
    {
      EnableGradScope on;
      Tensor z = Exp(p);
      EXPECT_FALSE(z.is_constant());
    }
  }
  EXPECT_TRUE(Tape::Get().grad_enabled());
  // Constants alone never record.
  Tensor c = Exp(Tensor::Ones({3}));
  EXPECT_TRUE(c.is_constant());
  Tape::Get().Reset();
}

TEST(Tape, TapeScopeRewindsNestedWork) {
  Tape::Get().Reset();
  Tensor p = Tensor::Ones({3}).set_requires_grad(true);
  Tensor y = Exp(p);
  const int64_t nodes = Tape::Get().num_nodes();
  const size_t bytes = Tape::Get().bytes_in_use();
  {
    TapeScope scope;
    Tensor g = Grad({Sum(Square(y))}, {p}, {}, /*create_graph=*/true)[0];
    EXPECT_GT(Tape::Get().num_nodes(), nodes);
  }
  EXPECT_EQ(Tape::Get().num_nodes(), nodes);
  EXPECT_EQ(Tape::Get().bytes_in_use(), bytes);
  EXPECT_DOUBLE_EQ(Sum(y).item(), 3 * std::exp(1.0));  // y still valid
  Tape::Get().Reset();
}

// A tiny regression step: memory in use after Reset() is back to zero every
// step and the reserve stops growing after the first step.
TEST(Tape, MemoryReturnsToBaselineOver1000Steps) {
  Rng rng(1);
  Tensor w = Tensor::Randn({4, 8}, rng).set_requires_grad(true);
  Tensor x = Tensor::Randn({16, 4}, rng);
  Tape& tape = Tape::Get();
  tape.Reset();
  size_t reserved_after_first = 0;
  for (int step = 0; step < 1000; ++step) {
    Tensor loss = Mean(Square(Tanh(MatMul(x, w))));
    w.ZeroGrad();
    Backward(loss);
    double* pw = w.mutable_data<double>();
    const double* g = w.grad().data<double>();
    for (int64_t i = 0; i < w.numel(); ++i) pw[i] -= 0.01 * g[i];
    tape.Reset();
    ASSERT_EQ(tape.bytes_in_use(), 0u);
    ASSERT_EQ(tape.num_nodes(), 0);
    if (step == 0) reserved_after_first = tape.bytes_reserved();
    ASSERT_EQ(tape.bytes_reserved(), reserved_after_first) << step;
  }
}

TEST(Backward, AccumulatesIntoParametersUntilZeroGrad) {
  Tensor p = Tensor::FromVector({2}, {1.0, 2.0}).set_requires_grad(true);
  Backward(Sum(Square(p)));
  Tape::Get().Reset();
  EXPECT_EQ(p.grad().ToVector(), (std::vector<double>{2, 4}));
  Backward(Sum(p * 3.0));
  Tape::Get().Reset();
  EXPECT_EQ(p.grad().ToVector(), (std::vector<double>{5, 7}));
  p.ZeroGrad();
  EXPECT_FALSE(p.grad().defined());
  // A parameter used twice gets both contributions.
  Backward(Sum(p * p * p) + Sum(p));
  Tape::Get().Reset();
  EXPECT_EQ(p.grad().ToVector(), (std::vector<double>{4, 13}));
}

TEST(Grad, UnusedInputsGetZerosAndSeedsScale) {
  Tensor a = Tensor::FromVector({2}, {1.0, 2.0}).set_requires_grad(true);
  Tensor b = Tensor::Ones({3}).set_requires_grad(true);
  Tensor y = a * a;
  auto g = Grad({y}, {a, b}, {Tensor::FromVector({2}, {10.0, -1.0})});
  EXPECT_EQ(g[0].ToVector(), (std::vector<double>{20, -4}));
  EXPECT_EQ(g[1].ToVector(), (std::vector<double>{0, 0, 0}));
  // Two outputs: the sum of their vector-Jacobian products.
  auto g2 = Grad({y, Sum(a)}, {a});
  EXPECT_EQ(g2[0].ToVector(), (std::vector<double>{3, 5}));
  Tape::Get().Reset();
}

TEST(Grad, WithRespectToIntermediatesAndConstants) {
  Tensor p = Tensor::FromVector({2}, {0.5, -1.0}).set_requires_grad(true);
  Tensor h = Exp(p);
  Tensor y = Sum(Square(h));
  auto g = Grad({y}, {h, p});
  EXPECT_DOUBLE_EQ(g[0][0], 2 * std::exp(0.5));   // dy/dh = 2h
  EXPECT_DOUBLE_EQ(g[1][1], 2 * std::exp(-2.0));  // dy/dp = 2h^2
  // An output that does not depend on the input, and a constant output.
  Tensor q = Tensor::Ones({3}).set_requires_grad(true);
  auto z = Grad({y, Sum(Tensor::Ones({2}))}, {q});
  EXPECT_EQ(z[0].ToVector(), (std::vector<double>{0, 0, 0}));
  // The same graph differentiated twice gives the same answer.
  EXPECT_EQ(Grad({y}, {p})[0].ToVector(), g[1].ToVector());
  Tape::Get().Reset();
  // A parameter is usable again after Reset (a fresh leaf).
  Tensor g2 = Grad({Sum(Exp(p) * Exp(p))}, {p})[0];
  EXPECT_EQ(g2.ToVector(), g[1].ToVector());
  Tape::Get().Reset();
}

// Adjoints meeting at a value are summed in place only into buffers the
// sweep owns alone: x + x hands the seed to x twice, and the seed, the
// adjoints asked for and the result stay distinct.
TEST(Grad, SumsOfAdjointsNeverWriteIntoSharedValues) {
  Tensor x = Tensor::FromVector({3}, {1, 2, 3}).set_requires_grad(true);
  Tensor seed = Tensor::FromVector({3}, {1, -2, 4});
  Tensor h = x * 1.0;
  Tensor y = h + h;
  auto g = Grad({y}, {x, h}, {seed});
  EXPECT_EQ(seed.ToVector(), (std::vector<double>{1, -2, 4}));
  EXPECT_EQ(g[1].ToVector(), (std::vector<double>{2, -4, 8}));
  EXPECT_EQ(g[0].ToVector(), (std::vector<double>{2, -4, 8}));
  // Three uses: the in-place sum of the first two must not reach the seed.
  Tensor z = x + x + x;
  EXPECT_EQ(Grad({z}, {x}, {seed})[0].ToVector(),
            (std::vector<double>{3, -6, 12}));
  EXPECT_EQ(seed.ToVector(), (std::vector<double>{1, -2, 4}));
  Tape::Get().Reset();
}

double MaxDiff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(a.ToVector()[i] - b.ToVector()[i]));
  return m;
}

// GradColumns is the narrowed Grad, to second order: through products that
// compute only the wanted columns (Affine, MatMulT with B transposed or not)
// and through ops that do not (an elementwise use of x), for a leaf, an
// intermediate and an output.
TEST(Grad, GradColumnsIsTheNarrowedGradToSecondOrder) {
  Rng rng(3);
  auto param = [&](Shape s) {
    return Tensor::Randn(s, rng).set_requires_grad(true);
  };
  Tensor x = param({5, 4}), w1 = param({4, 6}), b1 = param({6}),
         w2 = param({6, 4}), b2 = param({4}), v = param({4, 4}),
         u = param({4, 4});
  Tensor seed = Tensor::Randn({5, 4}, rng);
  auto f = [&](const Tensor& in) {
    return Affine(Tanh(Affine(in, w1, b1)), w2, b2) +
           MatMulT(in, v, false, true) + MatMul(Sin(in), u) + Square(in) * 0.5;
  };
  Tensor h = x * 2.0;  // an intermediate
  Tensor y = f(x) + f(h);
  for (auto [begin, width] :
       {std::pair<int64_t, int64_t>{1, 1}, {0, 4}, {2, 2}}) {
    for (const Tensor& at : {x, h}) {
      Tensor cols = GradColumns({y}, at, begin, width, {seed});
      Tensor ref = Narrow(Grad({y}, {at}, {seed})[0], 1, begin, width);
      EXPECT_LT(MaxDiff(cols, ref), 1e-13) << begin << "+" << width;
    }
    Tensor s = Sum(Square(GradColumns({y}, x, begin, width, {seed}, true)));
    Tensor sref =
        Sum(Square(Narrow(Grad({y}, {x}, {seed}, true)[0], 1, begin, width)));
    EXPECT_NEAR(s.item(), sref.item(), 1e-12);
    auto g = Grad({s}, {x, w1, b1, w2, b2, v, u});
    auto gref = Grad({sref}, {x, w1, b1, w2, b2, v, u});
    for (size_t k = 0; k < g.size(); ++k)
      EXPECT_LT(MaxDiff(g[k], gref[k]), 1e-12) << "input " << k;
  }
  // x as the output, and an output that does not depend on x.
  EXPECT_EQ(GradColumns({x}, x, 1, 2, {seed}).ToVector(),
            Narrow(seed, 1, 1, 2).ToVector());
  EXPECT_EQ(GradColumns({Sum(b1)}, x, 3, 1).ToVector(),
            std::vector<double>(5, 0.0));
  Tape::Get().Reset();
}

// Writes new tape values over the arena memory freed by a reset or rewind.
void OverwriteTape(const Tensor& p) {
  for (int i = 0; i < 16; ++i) Tensor z = p * (100.0 + i);
}

// A no-grad reshape of a tape value keeps its values after the tape moves on.
TEST(Tape, NoGradReshapeOfTapeValueSurvivesReset) {
  Tape::Get().Reset();
  Tensor p = Tensor::FromVector({2, 2}, {0, 1, 2, 3}).set_requires_grad(true);
  Tensor y = Exp(p);
  Tensor flat;
  {
    NoGradScope no_grad;
    flat = Reshape(y, {4});
  }
  Tape::Get().Reset();
  OverwriteTape(p);
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(flat[i], std::exp(i)) << i;
  Tape::Get().Reset();
}

// The VJP of a reshape seeded with a tape value made inside a TapeScope.
TEST(Tape, VjpSeededWithTapeValueSurvivesRewind) {
  Tape::Get().Reset();
  Tensor p = Tensor::FromVector({4}, {0, 1, 2, 3}).set_requires_grad(true);
  Tensor x = Tensor::Ones({2, 2});
  Tensor g;
  {
    TapeScope scope;
    Tensor seed = Exp(p);  // a tape value
    g = Vjp([](const Tensor& t) { return Reshape(t, {4}); }, x, seed).second;
  }
  OverwriteTape(p);
  ASSERT_EQ(g.shape(), (Shape{2, 2}));
  for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(g[i], std::exp(i)) << i;
  Tape::Get().Reset();
}

// A loss computed from a parameter with recording off would silently train
// nothing: Backward aborts, also when the last ops ran outside the scope.
TEST(BackwardDeath, LossComputedUnderNoGradScope) {
  const char* msg =
      "backward: loss does not require grad: it was computed "
      "with recording off \\(under NoGradScope";
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        NoGradScope no_grad;
        Backward(Sum(Square(p)));
      },
      msg);
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor h;
        {
          NoGradScope no_grad;
          h = Reshape(Exp(p), {2, 1});
        }
        Backward(Mean(h * 2.0));
      },
      msg);
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y = Exp(p);  // a tape value, reduced with recording off
        NoGradScope no_grad;
        Backward(IndexSelect(Reshape(y, {2}), 0, {1}));
      },
      msg);
}

// Without any parameter (or after an explicit Detach) a constant loss has
// nothing to train: Backward does nothing, Grad gives zeros.
TEST(Backward, ConstantLossWithoutParametersDoesNothing) {
  Tensor p = Tensor::Ones({2}).set_requires_grad(true);
  Backward(Sum(Exp(Tensor::Ones({2}))));
  Tensor h;
  {
    NoGradScope no_grad;
    h = Exp(p).Detach();
  }
  Backward(Sum(h));
  EXPECT_FALSE(p.grad().defined());
  NoGradScope no_grad;
  EXPECT_EQ(Grad({Sum(Exp(p))}, {p})[0].ToVector(),
            (std::vector<double>{0, 0}));
  Tape::Get().Reset();
}

TEST(GradDeath, SeedShapeMismatch) {
  EXPECT_DEATH(
      {
        Tensor a = Tensor::Ones({2}).set_requires_grad(true);
        Grad({a * 2.0}, {a}, {Tensor::Ones({3})});
      },
      "grad: grad_output shape \\[3\\] != output shape \\[2\\]");
}

// One MLP-like regression trained by plain SGD, from a seed.
std::vector<double> Train(uint64_t seed) {
  Rng rng(seed);
  Tensor w1 = Tensor::Randn({2, 16}, rng).set_requires_grad(true);
  Tensor w2 = Tensor::Randn({16, 1}, rng).set_requires_grad(true);
  Tensor x = Tensor::Randn({32, 2}, rng);
  Tensor y = Sin(Sum(x, 1, /*keepdim=*/true)).Detach();
  std::vector<double> losses;
  for (int step = 0; step < 200; ++step) {
    Tensor loss = Mean(Square(MatMul(Tanh(MatMul(x, w1)), w2) - y));
    losses.push_back(loss.item());
    w1.ZeroGrad();
    w2.ZeroGrad();
    Backward(loss);
    for (Tensor* p : {&w1, &w2}) {
      double* v = p->mutable_data<double>();
      const double* g = p->grad().data<double>();
      for (int64_t i = 0; i < p->numel(); ++i) v[i] -= 0.05 * g[i];
    }
    Tape::Get().Reset();
  }
  return losses;
}

TEST(Tape, TwoThreadsTrainIndependentlyWithIdenticalResults) {
  const std::vector<double> seq1 = Train(1), seq2 = Train(2);
  EXPECT_LT(seq1.back(), seq1.front());
  std::vector<double> par1, par2;
  std::thread t1([&] { par1 = Train(1); });
  std::thread t2([&] { par2 = Train(2); });
  t1.join();
  t2.join();
  EXPECT_EQ(par1, seq1);  // bit-identical
  EXPECT_EQ(par2, seq2);
}

TEST(TapeDeath, TensorFromAnotherThreadIsStale) {
  EXPECT_DEATH(
      {
        Tensor p = Tensor::Ones({2}).set_requires_grad(true);
        Tensor y = Exp(p);
        std::thread t([&] { (void)Sum(y); });
        t.join();
      },
      "stale tensor");
}

}  // namespace
}  // namespace flowtape
