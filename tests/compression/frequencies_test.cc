#include "compression/frequencies.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "autodiff/tensor.h"
#include "gtest/gtest.h"

namespace flowtape::compression {
namespace {

double Objective(const std::vector<double>& q, const std::vector<uint32_t>& f) {
  double s = 0.0;
  for (size_t i = 0; i < q.size(); ++i) {
    if (q[i] > 0) s += q[i] * std::log(static_cast<double>(f[i]));
  }
  return s;
}

// Best sum q_i log f_i over all f with sum M, f_i >= 1 where q_i > 0 and
// f_i = 0 where q_i = 0, by enumeration.
double BruteForceBest(const std::vector<double>& q, int64_t m) {
  std::vector<int> support;
  for (size_t i = 0; i < q.size(); ++i)
    if (q[i] > 0) support.push_back(static_cast<int>(i));
  double best = -std::numeric_limits<double>::infinity();
  std::vector<uint32_t> f(q.size(), 0);
  // Recursive enumeration of compositions over the support.
  std::function<void(size_t, int64_t)> rec = [&](size_t k, int64_t left) {
    if (k + 1 == support.size()) {
      f[support[k]] = static_cast<uint32_t>(left);
      best = std::max(best, Objective(q, f));
      return;
    }
    const int64_t rest = static_cast<int64_t>(support.size() - k - 1);
    for (int64_t v = 1; v <= left - rest; ++v) {
      f[support[k]] = static_cast<uint32_t>(v);
      rec(k + 1, left - v);
    }
  };
  rec(0, m);
  return best;
}

void ExpectValidTable(const std::vector<double>& q,
                      const std::vector<uint32_t>& f, int p) {
  ASSERT_EQ(f.size(), q.size());
  uint64_t sum = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    if (q[i] > 0) {
      EXPECT_GE(f[i], 1u) << "symbol " << i;
    } else {
      EXPECT_EQ(f[i], 0u) << "symbol " << i;
    }
    sum += f[i];
  }
  EXPECT_EQ(sum, uint64_t{1} << p);
}

// QuantizeCumulative: sum 2^p, every symbol (zero masses too) >= 1, and
// each symbol within its bounds q (M - K) / Q <= f < q (M - K) / Q + 2.
TEST(FrequenciesTest, CumulativeQuantizationKeepsEachShare) {
  for (int p : {10, 18}) {
    std::vector<double> q = {0.0, 1e-9, 3.0, 0.25, 0.0, 7.5, 1e-3, 2.0};
    for (int i = 0; i < 700; ++i) q.push_back(std::exp(-0.02 * i));
    auto f = QuantizeCumulative(q, p);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_EQ(f->size(), q.size());
    const double total = std::accumulate(q.begin(), q.end(), 0.0);
    const double room = std::ldexp(1.0, p) - static_cast<double>(q.size());
    uint64_t sum = 0;
    for (size_t s = 0; s < q.size(); ++s) {
      const double share = q[s] / total * room;
      EXPECT_GE((*f)[s], 1u);
      EXPECT_GE((*f)[s] + 1e-9, share) << "symbol " << s;
      EXPECT_LT((*f)[s], share + 2.0) << "symbol " << s;
      sum += (*f)[s];
    }
    EXPECT_EQ(sum, uint64_t{1} << p);
  }
  EXPECT_FALSE(QuantizeCumulative(std::vector<double>(5, 1.0), 2).ok());
  EXPECT_FALSE(QuantizeCumulative({1.0, -1.0}, 8).ok());
  EXPECT_FALSE(QuantizeCumulative({0.0, 0.0}, 8).ok());
}

TEST(FrequenciesTest, QuantizationIsOptimalOnSmallProblems) {
  Rng rng(5);
  int checked = 0;
  for (int k = 2; k <= 5; ++k) {
    for (int p : {3, 4, 5}) {
      if (k > (1 << p)) continue;
      for (int rep = 0; rep < 40; ++rep) {
        std::vector<double> q(k);
        for (double& v : q) {
          const double u = rng.Uniform();
          // Mix of large, tiny (forced to 1) and zero masses.
          v = u < 0.15 ? 0.0 : u < 0.35 ? 1e-4 * rng.Uniform() : rng.Uniform();
        }
        if (std::accumulate(q.begin(), q.end(), 0.0) == 0.0) q[0] = 1.0;
        absl::StatusOr<std::vector<uint32_t>> f = QuantizeProbabilities(q, p);
        ASSERT_TRUE(f.ok()) << f.status();
        ExpectValidTable(q, *f, p);
        EXPECT_GE(Objective(q, *f), BruteForceBest(q, int64_t{1} << p) - 1e-12)
            << "k " << k << " p " << p << " rep " << rep;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 400);
}

// Cases where rounding q M / Q to the nearest integer (and fixing the sum
// with single-direction moves) is not optimal: the exchange phase must move
// a unit from the larger symbol to the smaller one.
TEST(FrequenciesTest, ExchangesFixNearestRounding) {
  struct Case {
    int p;
    std::vector<double> q;
    std::vector<uint32_t> optimal;
  };
  const Case cases[] = {
      {2, {0.23554891579863474, 0.40243933349695588}, {2, 2}},
      {3, {8.6121765722239316e-05, 0.00038340922667508016}, {2, 6}},
      {6, {0.0081026754168378994, 0.00091566531635905014}, {57, 7}},
      {6, {0.00058570011995142876, 0.024750182166344475}, {2, 62}},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<uint32_t>> f = QuantizeProbabilities(c.q, c.p);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f, c.optimal) << "p = " << c.p;
    EXPECT_NEAR(Objective(c.q, *f), BruteForceBest(c.q, int64_t{1} << c.p),
                1e-15);
  }
}

TEST(FrequenciesTest, LargeTablesTrackTheProbabilities) {
  Rng rng(6);
  const int k = 256, p = 16;
  std::vector<double> q(k);
  for (double& v : q) v = 0.05 + rng.Uniform();
  const double total = std::accumulate(q.begin(), q.end(), 0.0);
  absl::StatusOr<std::vector<uint32_t>> f = QuantizeProbabilities(q, p);
  ASSERT_TRUE(f.ok());
  ExpectValidTable(q, *f, p);
  // No symbol is forced to 1 here, so the optimum is within one unit of the
  // proportional share (the KKT conditions of the concave problem).
  double kl = 0.0;
  for (int i = 0; i < k; ++i) {
    EXPECT_NEAR((*f)[i], q[i] / total * 65536.0, 1.0) << i;
    kl += q[i] / total * std::log2((q[i] / total) / ((*f)[i] / 65536.0));
  }
  EXPECT_LT(kl, 1e-5);  // bits per symbol lost to quantisation
}

TEST(FrequenciesTest, ExtremeDistribution) {
  for (int p : {12, 16, 31}) {
    std::vector<double> q(256, 1e-15);
    q[7] = 1.0;
    absl::StatusOr<std::vector<uint32_t>> f = QuantizeProbabilities(q, p);
    ASSERT_TRUE(f.ok());
    ExpectValidTable(q, *f, p);
    for (int i = 0; i < 256; ++i) {
      if (i != 7) {
        EXPECT_EQ((*f)[i], 1u) << p;
      }
    }
    EXPECT_EQ((*f)[7], (uint32_t{1} << p) - 255) << p;
  }
  // One symbol only: the whole range.
  absl::StatusOr<std::vector<uint32_t>> one =
      QuantizeProbabilities({0.0, 2.0, 0.0}, 10);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, (std::vector<uint32_t>{0, 1024, 0}));
}

TEST(FrequenciesTest, QuantizeRejectsBadInput) {
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(QuantizeProbabilities({0.5, 0.5}, 0).status().code(), kBad);
  EXPECT_EQ(QuantizeProbabilities({0.5, 0.5}, 32).status().code(), kBad);
  EXPECT_EQ(QuantizeProbabilities({}, 8).status().code(), kBad);
  EXPECT_EQ(QuantizeProbabilities({0.5, -0.1}, 8).status().code(), kBad);
  EXPECT_EQ(QuantizeProbabilities({0.5, std::nan("")}, 8).status().code(),
            kBad);
  EXPECT_EQ(QuantizeProbabilities({0.0, 0.0}, 8).status().code(), kBad);
  EXPECT_EQ(
      QuantizeProbabilities(std::vector<double>(5, 1.0), 2).status().code(),
      kBad);  // 5 coded symbols, total 4
  EXPECT_TRUE(QuantizeProbabilities({1, 1, 0, 1, 1}, 2).ok());
  EXPECT_EQ(QuantizeProbabilities({std::numeric_limits<double>::max(),
                                   std::numeric_limits<double>::max()},
                                  8)
                .status()
                .code(),
            kBad);  // total overflows
}

TEST(FrequenciesTest, CdfMatchesMasses) {
  const std::vector<double> q = {0.1, 0.0, 0.25, 0.05, 0.6};
  std::vector<double> cum(q.size());
  std::partial_sum(q.begin(), q.end(), cum.begin());
  absl::StatusOr<std::vector<uint32_t>> from_cdf =
      QuantizeCdf([&](int k) { return cum[k]; }, 5, 12);
  absl::StatusOr<std::vector<uint32_t>> from_q =
      QuantizeProbabilities({cum[0], cum[1] - cum[0], cum[2] - cum[1],
                             cum[3] - cum[2], cum[4] - cum[3]},
                            12);
  ASSERT_TRUE(from_cdf.ok() && from_q.ok());
  EXPECT_EQ(*from_cdf, *from_q);
  EXPECT_EQ((*from_cdf)[1], 0u);
  absl::Status decreasing =
      QuantizeCdf([](int k) { return k == 2 ? 0.1 : 0.5; }, 4, 12).status();
  EXPECT_EQ(decreasing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decreasing.message().find("cdf(2)"), std::string::npos)
      << decreasing;
  EXPECT_EQ(QuantizeCdf([](int) { return 1.0; }, 0, 12).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Reference bin masses with libm in long double, the naive difference.
double RefLogisticBin(double mu, double s, int k, int num) {
  auto cdf = [&](long double x) {
    return 1.0L / (1.0L + std::exp(-(x - mu) / s));
  };
  const long double hi = k == num - 1 ? 1.0L : cdf(k + 0.5L);
  const long double lo = k == 0 ? 0.0L : cdf(k - 0.5L);
  return static_cast<double>(hi - lo);
}

TEST(FrequenciesTest, DiscretizedLogisticPmf) {
  for (auto [mu, s] : {std::pair{100.3, 4.0}, std::pair{-3.0, 10.0},
                       std::pair{250.0, 0.7}, std::pair{127.5, 60.0}}) {
    const LogisticComponent c{1.0, mu, s};
    absl::StatusOr<std::vector<double>> pmf =
        DiscretizedLogisticMixturePmf({&c, 1}, 256);
    ASSERT_TRUE(pmf.ok());
    double total = 0.0;
    for (int k = 0; k < 256; ++k) {
      EXPECT_NEAR((*pmf)[k], RefLogisticBin(mu, s, k, 256), 1e-15)
          << "mu " << mu << " k " << k;
      total += (*pmf)[k];
    }
    EXPECT_NEAR(total, 1.0, 1e-13);
    // Open edge bins.
    EXPECT_NEAR((*pmf)[0], 1.0 / (1.0 + std::exp(-(0.5 - mu) / s)), 1e-15);
    EXPECT_NEAR((*pmf)[255], 1.0 / (1.0 + std::exp((254.5 - mu) / s)), 1e-15);
  }
  // Upper tail keeps relative precision: mass of bin 200 for mu = 0, s = 5 is
  // e^-39.9 (1 - e^-0.2) ~ 4.3e-19, lost entirely by a naive 1 - 1 difference.
  const LogisticComponent tail{1.0, 0.0, 5.0};
  absl::StatusOr<std::vector<double>> pmf =
      DiscretizedLogisticMixturePmf({&tail, 1}, 256);
  ASSERT_TRUE(pmf.ok());
  const double expected = std::exp(-199.5 / 5.0) - std::exp(-200.5 / 5.0);
  EXPECT_NEAR((*pmf)[200] / expected, 1.0, 1e-12);
}

TEST(FrequenciesTest, MixtureIsTheWeightedSum) {
  const std::vector<LogisticComponent> mix = {
      {2.0, 30.0, 3.0}, {1.0, 200.0, 10.0}, {1.0, 128.0, 1.5}};
  absl::StatusOr<std::vector<double>> pmf =
      DiscretizedLogisticMixturePmf(mix, 256);
  ASSERT_TRUE(pmf.ok());
  for (int k = 0; k < 256; ++k) {
    const double ref = 0.5 * RefLogisticBin(30, 3, k, 256) +
                       0.25 * RefLogisticBin(200, 10, k, 256) +
                       0.25 * RefLogisticBin(128, 1.5, k, 256);
    EXPECT_NEAR((*pmf)[k], ref, 2e-15) << k;
  }
}

// A 64-bit xor-multiply hash over the table's bytes (FNV-1a's prime, but
// the offset basis 1469598103934665603, not FNV's 14695981039346656037: not
// FNV-1a, and it need not be, only stable): any change in the algorithm or
// its arithmetic (and so in every stream coded with it) changes this number.
uint64_t Fingerprint(const std::vector<uint32_t>& f) {
  uint64_t h = 1469598103934665603ull;
  for (uint32_t v : f) {
    for (int b = 0; b < 4; ++b) {
      h ^= (v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return h;
}

TEST(FrequenciesTest, LogisticTables) {
  absl::StatusOr<std::vector<uint32_t>> f =
      DiscretizedLogisticFrequencies(100.3, 4.0, 256, 16);
  ASSERT_TRUE(f.ok()) << f.status();
  uint64_t sum = 0;
  for (uint32_t v : *f) {
    EXPECT_GE(v, 1u);  // every bin codable, even where the pmf underflows
    sum += v;
  }
  EXPECT_EQ(sum, 65536u);
  // Very sharp: nearly all mass on the nearest integer, the rest at 1.
  absl::StatusOr<std::vector<uint32_t>> sharp =
      DiscretizedLogisticFrequencies(17.2, 1e-3, 256, 16);
  ASSERT_TRUE(sharp.ok());
  EXPECT_EQ((*sharp)[17], 65536u - 255u);
  // One symbol.
  absl::StatusOr<std::vector<uint32_t>> one =
      DiscretizedLogisticFrequencies(0.0, 1.0, 1, 8);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, std::vector<uint32_t>{256});

  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(DiscretizedLogisticFrequencies(0, 1, 257, 8).status().code(), kBad);
  EXPECT_EQ(DiscretizedLogisticFrequencies(0, 0.0, 16, 8).status().code(),
            kBad);
  EXPECT_EQ(DiscretizedLogisticFrequencies(0, -1, 16, 8).status().code(), kBad);
  EXPECT_EQ(
      DiscretizedLogisticFrequencies(std::nan(""), 1, 16, 8).status().code(),
      kBad);
  EXPECT_EQ(DiscretizedLogisticFrequencies(0, 1, 0, 8).status().code(), kBad);
  const LogisticComponent neg{-1.0, 0, 1};
  EXPECT_EQ(
      DiscretizedLogisticMixtureFrequencies({&neg, 1}, 16, 8).status().code(),
      kBad);
  EXPECT_EQ(DiscretizedLogisticMixtureFrequencies({}, 16, 8).status().code(),
            kBad);
}

// Fingerprint's hash (not FNV-1a) over the bit patterns of the masses:
// catches a change of a single rounding anywhere (a different libm, a fused
// multiply-add), which the quantised table usually absorbs.
uint64_t BitFingerprint(const std::vector<double>& v) {
  uint64_t h = 1469598103934665603ull;
  for (double d : v) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    for (int b = 0; b < 8; ++b) {
      h ^= (bits >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return h;
}

TEST(FrequenciesTest, MixtureMassesAreBitStable) {
  const std::vector<LogisticComponent> mix = {
      {0.2, 12.25, 2.5}, {0.5, 140.8, 7.125}, {0.3, 251.0, 0.375}};
  absl::StatusOr<std::vector<double>> pmf =
      DiscretizedLogisticMixturePmf(mix, 256);
  ASSERT_TRUE(pmf.ok());
  EXPECT_EQ(BitFingerprint(*pmf), 3659411133739969237ull)
      << "fingerprint " << BitFingerprint(*pmf);
}

TEST(FrequenciesTest, MixtureTableFingerprintIsStable) {
  const std::vector<LogisticComponent> mix = {
      {0.2, 12.25, 2.5}, {0.5, 140.8, 7.125}, {0.3, 251.0, 0.375}};
  absl::StatusOr<std::vector<uint32_t>> f =
      DiscretizedLogisticMixtureFrequencies(mix, 256, 16);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(Fingerprint(*f), 17394518777103699459ull)
      << "fingerprint " << Fingerprint(*f);
}

TEST(FrequenciesTest, TableLookup) {
  const std::vector<uint32_t> freqs = {3, 0, 5, 0, 0, 7, 1};  // sum 16
  absl::StatusOr<FrequencyTable> t = FrequencyTable::Create(freqs, 4);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->num_symbols(), 7);
  for (uint32_t v = 0; v < 16; ++v) {
    int expected = -1;
    uint32_t c = 0;
    for (int s = 0; s < 7; ++s) {
      if (v >= c && v < c + freqs[s]) expected = s;
      c += freqs[s];
    }
    EXPECT_EQ(t->SymbolForCumulative(v), expected) << v;
    const int s = t->SymbolForCumulative(v);
    EXPECT_LE(t->start(s), v);
    EXPECT_LT(v, t->start(s) + t->freq(s));
  }
  EXPECT_EQ(t->SymbolForCumulative(16), -1);
  EXPECT_EQ(t->SymbolForCumulative(0xffffffffu), -1);

  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(FrequencyTable::Create({3, 4}, 3).status().code(), kBad);
  EXPECT_EQ(FrequencyTable::Create({}, 3).status().code(), kBad);
  EXPECT_EQ(FrequencyTable::Create({1, 1}, 0).status().code(), kBad);
  EXPECT_EQ(FrequencyTable::Create({0xffffffffu, 1}, 31).status().code(), kBad);
  EXPECT_TRUE(FrequencyTable::Create({1u << 30, 1u << 30}, 31).ok());
}

}  // namespace
}  // namespace flowtape::compression
