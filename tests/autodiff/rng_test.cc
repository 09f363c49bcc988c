// Rng's streams are pinned: a seed must give these exact bits under every
// compiler, standard library and build configuration (-O0, -O2
// -march=native with FMA). The Philox block is checked against the
// known-answer vector of Random123 (kat_vectors: philox4x32_10, counter 0,
// key 0); the draws against values recorded once from this implementation.
#include "autodiff/rng.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace flowtape {
namespace {

// Exact comparison, printing hex floats so a new pin can be read off.
void ExpectBits(const std::vector<double>& got, const std::vector<double>& want,
                const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    char g[40], w[40];
    std::snprintf(g, sizeof g, "%a", got[i]);
    std::snprintf(w, sizeof w, "%a", want[i]);
    EXPECT_EQ(got[i], want[i])
        << what << "[" << i << "]: got " << g << ", want " << w;
  }
}

TEST(Rng, PhiloxKnownAnswer) {
  // Random123 philox4x32_10, ctr = {0,0,0,0}, key = {0,0}:
  // 6627e8d5 e169c58d bc57ac4c 9b00dbd8; words are r0 | r1 << 32, r2 | r3
  // << 32.
  Rng rng(0, 0);
  EXPECT_EQ(rng.Bits64(), 0xe169c58d6627e8d5ull);
  EXPECT_EQ(rng.Bits64(), 0x9b00dbd8bc57ac4cull);
}

std::vector<double> Draw(int n, double (*f)(Rng&), uint64_t seed,
                         uint64_t stream) {
  Rng rng(seed, stream);
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(f(rng));
  return out;
}

TEST(Rng, PinnedUniform) {
  ExpectBits(Draw(
                 4, [](Rng& r) { return r.Uniform(); }, 42, 3),
             {0x1.c8522a4429468p-2, 0x1.3240b78f72318p-1, 0x1.d91b19b85a8d8p-4,
              0x1.fd5237354d898p-3},
             "Uniform");
}

TEST(Rng, PinnedNormal) {
  ExpectBits(
      Draw(
          6, [](Rng& r) { return r.Normal(); }, 42, 3),
      {-0x1.2f4b966f7c108p+0, 0x1.11bcc675e3716p+1, -0x1.f344af0dd257ap-2,
       -0x1.4652edb73769dp-2, 0x1.a9400d6dcf4a3p-1, 0x1.00452322429c4p-2},
      "Normal");
}

// A long stream pinned by a hash of its bits: a build that fuses a * b + c
// (-march=native with FMA) changed about one Normal() in seven, a difference
// the few pinned draws above happened to miss. Under --config=opt too (CI).
TEST(Rng, PinnedLongStreams) {
  auto hash = [](int n, double (*f)(Rng&)) {
    Rng rng(1, 2);
    uint64_t h = 14695981039346656037ull;
    for (int i = 0; i < n; ++i) {
      const double x = f(rng);
      uint64_t bits;
      std::memcpy(&bits, &x, sizeof bits);
      h = (h ^ bits) * 1099511628211ull;
    }
    return h;
  };
  EXPECT_EQ(hash(100000, [](Rng& r) { return r.Normal(); }),
            9238830150094143198ull);
  EXPECT_EQ(hash(20000, [](Rng& r) { return r.Gamma(0.5); }),
            16150628274747499715ull);
  EXPECT_EQ(hash(20000, [](Rng& r) { return r.Gamma(2.5); }),
            167359796399073561ull);
}

TEST(Rng, PinnedGammaPoissonGeometric) {
  ExpectBits(Draw(
                 3, [](Rng& r) { return r.Gamma(0.5); }, 7, 1),
             {0x1.122c70395cb05p-2, 0x1.9fa65bb170d1dp-5, 0x1.1e0c24b470c6fp-3},
             "Gamma(0.5)");
  ExpectBits(Draw(
                 3, [](Rng& r) { return r.Gamma(2.5); }, 7, 2),
             {0x1.87b096fbbe548p+1, 0x1.9b0772bc43d74p+0, 0x1.4c8955bead17fp+2},
             "Gamma(2.5)");
  ExpectBits(Draw(
                 4, [](Rng& r) { return double(r.Poisson(3.7)); }, 7, 3),
             {4, 5, 3, 2}, "Poisson(3.7)");
  ExpectBits(Draw(
                 4, [](Rng& r) { return double(r.Geometric(0.3)); }, 7, 4),
             {3, 6, 0, 1}, "Geometric(0.3)");
}

TEST(Rng, PinnedDiscrete) {
  ExpectBits(Draw(
                 6, [](Rng& r) { return double(r.UniformInt(1000)); }, 9, 0),
             {534, 773, 494, 450, 522, 375}, "UniformInt(1000)");
  ExpectBits(Draw(
                 6,
                 [](Rng& r) {
                   return double(r.Categorical({0.1, 0.0, 0.6, 0.3}));
                 },
                 9, 1),
             {2, 0, 2, 0, 2, 3}, "Categorical");
  ExpectBits(Draw(
                 6, [](Rng& r) { return r.Rademacher(); }, 9, 2),
             {1, -1, -1, -1, -1, -1}, "Rademacher");
}

TEST(Rng, StreamsDiffer) {
  Rng a(5, 0), b(5, 1), c(6, 0);
  const uint64_t wa = a.Bits64(), wb = b.Bits64(), wc = c.Bits64();
  EXPECT_NE(wa, wb);
  EXPECT_NE(wa, wc);
}

// Seek(position()) continues a stream exactly, wherever it stopped: between
// the two words of a block and with a pending polar normal included.
TEST(Rng, SeekContinuesTheStream) {
  for (int skip : {0, 1, 2, 3, 7}) {
    Rng a(9, 4);
    for (int i = 0; i < skip; ++i) a.Bits64();
    a.Normal();  // leaves the second normal pending
    Rng b(9, 4);
    ASSERT_TRUE(b.Seek(a.position()));
    for (int i = 0; i < 50; ++i) {
      ASSERT_EQ(a.Normal(), b.Normal()) << "skip " << skip << " draw " << i;
      ASSERT_EQ(a.Bits64(), b.Bits64()) << "skip " << skip << " draw " << i;
    }
  }
  Rng c(1);
  Rng::Position bad = c.position();
  bad[3] = 3;  // no block has a third word
  EXPECT_FALSE(c.Seek(bad));
  bad = c.position();
  bad[4] = 2;
  EXPECT_FALSE(c.Seek(bad));
  EXPECT_EQ(c.Bits64(), Rng(1).Bits64());  // unchanged
  // Words that are not the block's (forged, or another seed's) are refused.
  Rng d(1);
  d.Bits64();
  Rng::Position forged = d.position();
  forged[2] ^= 1;
  Rng e(1);
  EXPECT_FALSE(e.Seek(forged));
  Rng other_seed(2);
  EXPECT_FALSE(other_seed.Seek(d.position()));
  EXPECT_TRUE(e.Seek(d.position()));
  EXPECT_EQ(e.Bits64(), d.Bits64());
}

}  // namespace
}  // namespace flowtape
