// MADE: the autoregressive property from the autodiff Jacobian, for every
// ordering and degree assignment, plus full connectivity where allowed;
// degree-sorted masks are staircases that MaskedAffine computes in blocks
// (against the dense masked product), and a checkpoint whose masks use the
// older cyclic unit order loads and computes bit for bit.
#include "flows/made.h"

#include <cmath>
#include <map>
#include <string>

#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "nn/masked_matmul.h"

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

std::map<std::string, Tensor> Named(const nn::Module& m, bool buffers) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : buffers ? m.NamedBuffers() : m.NamedParameters())
    out[name] = t;
  return out;
}

// The oracle: the same network with dense products x (w .* m) + b.
Tensor DenseMade(const Made& made, const Tensor& x, int64_t layers) {
  auto params = Named(made, false), buffers = Named(made, true);
  Tensor h = x;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "layer" + std::to_string(l) + ".";
    if (l > 0) h = Relu(h);
    h = MatMul(h, params[p + "weight"] * buffers[p + "mask"]) +
        params[p + "bias"];
  }
  return h;
}

bool SamePlan(const std::vector<nn::MaskBlock>& a,
              const std::vector<nn::MaskBlock>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].c0 != b[i].c0 || a[i].c1 != b[i].c1 || a[i].lo != b[i].lo ||
        a[i].hi != b[i].hi)
      return false;
  return true;
}

// Fills every parameter with N(0, 0.3^2) draws (biases and the zeroed last
// layer included), so every mask entry matters.
void Randomize(nn::Module& m, Rng& rng) {
  for (auto& [name, p] : m.NamedParameters()) {
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] = 0.3 * rng.Normal();
  }
}

TEST(MadeBlocks, SortedDegreesGiveStaircasesComputedInBlocks) {
  Rng rng(4);
  for (Ordering ordering : {Ordering::kNatural, Ordering::kReversed}) {
    MadeOptions o;
    o.dim = 16;
    o.hidden = {32, 32};
    o.ordering = ordering;
    auto made = Made::Create(o, rng).value();
    Randomize(*made, rng);
    auto buffers = Named(*made, true);
    for (int l = 0; l < 3; ++l) {
      const Tensor mask = buffers["layer" + std::to_string(l) + ".mask"];
      const std::vector<nn::MaskBlock> plan = nn::PlanMaskBlocks(mask);
      int64_t computed = 0;
      for (const nn::MaskBlock& b : plan)
        computed += (b.c1 - b.c0) * (b.hi - b.lo);
      // Several blocks, and at least a quarter of the dense work skipped.
      EXPECT_GT(plan.size(), 1u) << "layer " << l;
      EXPECT_LE(computed * 4, mask.numel() * 3) << "layer " << l;
    }
    Tensor x = Tensor::Randn({7, o.dim}, rng);
    Tensor y = (*made)(x), want = DenseMade(*made, x, 3);
    for (int64_t i = 0; i < y.numel(); ++i)
      EXPECT_NEAR(y[i], want[i], 1e-12) << i;
  }
}

// The masks of the older cyclic assignment m(k) = 1 + k mod (D - 1).
std::map<std::string, Tensor> CyclicMasks(int64_t d, int64_t h, int64_t p) {
  std::vector<int64_t> m(h);
  for (int64_t k = 0; k < h; ++k) m[k] = 1 + k % (d - 1);
  auto mask = [](int64_t rows, int64_t cols, auto allowed) {
    std::vector<double> v(rows * cols);
    for (int64_t a = 0; a < rows; ++a)
      for (int64_t b = 0; b < cols; ++b) v[a * cols + b] = allowed(a, b);
    return Tensor::FromVector({rows, cols}, v);
  };
  return {
      {"layer0.mask",
       mask(d, h, [&](int64_t a, int64_t b) { return m[b] >= a + 1; })},
      {"layer1.mask",
       mask(h, h, [&](int64_t a, int64_t b) { return m[b] >= m[a]; })},
      {"layer2.mask",
       mask(h, d * p, [&](int64_t a, int64_t b) { return b / p + 1 > m[a]; })},
  };
}

TEST(MadeCheckpoint, CyclicMasksLoadAndComputeBitForBit) {
  Rng rng(8);
  MadeOptions o;
  o.dim = 12;
  o.hidden = {20, 20};
  auto old = Made::Create(o, rng).value();
  Randomize(*old, rng);
  const auto cyclic = CyclicMasks(o.dim, 20, o.params_per_dim);
  for (auto& [name, buffer] : old->NamedBuffers()) {
    if (!cyclic.count(name)) continue;
    Tensor want = cyclic.at(name);
    // The sorted masks differ from the cyclic ones, so the test can fail.
    EXPECT_NE(buffer.ToVector(), want.ToVector()) << name;
    std::copy_n(want.data<double>(), want.numel(),
                buffer.mutable_data<double>());
  }
  const std::string path = ::testing::TempDir() + "/cyclic_made.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, *old).ok());
  auto loaded = Made::Create(o, rng).value();
  Tensor x = Tensor::Randn({9, o.dim}, rng);
  (*loaded)(x);  // computes with its own (sorted) masks first
  ASSERT_TRUE(nn::LoadCheckpoint(path, *loaded).ok());

  auto buffers = Named(*loaded, true);
  for (const auto& [name, want] : cyclic) {
    EXPECT_EQ(buffers[name].ToVector(), want.ToVector()) << name;
    EXPECT_TRUE(
        SamePlan(nn::PlanMaskBlocks(buffers[name]), nn::PlanMaskBlocks(want)))
        << name;
  }
  Tensor y_old = (*old)(x), y_new = (*loaded)(x);
  Tensor want = DenseMade(*loaded, x, 3);
  ASSERT_EQ(y_old.shape(), y_new.shape());
  for (int64_t i = 0; i < y_old.numel(); ++i) {
    EXPECT_EQ(y_old[i], y_new[i]) << i;
    EXPECT_NEAR(y_new[i], want[i], 1e-12) << i;
  }
}

}  // namespace
}  // namespace flowtape::flows
