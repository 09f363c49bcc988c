#include "compression/rans.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <numeric>
#include <vector>

#include "autodiff/tensor.h"
#include "compression/frequencies.h"
#include "compression/symbol_coding.h"
#include "gtest/gtest.h"

namespace flowtape::compression {
namespace {

// A coded sequence: each symbol with the table it is coded under.
struct Message {
  std::vector<std::shared_ptr<const FrequencyTable>> tables;
  std::vector<int> symbols;
};

std::shared_ptr<const FrequencyTable> MakeTable(const std::vector<double>& q,
                                                int p) {
  absl::StatusOr<std::vector<uint32_t>> f = QuantizeProbabilities(q, p);
  EXPECT_TRUE(f.ok()) << f.status();
  absl::StatusOr<FrequencyTable> t = FrequencyTable::Create(*f, p);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::make_shared<const FrequencyTable>(*std::move(t));
}

// Draws a symbol with probability freq / 2^p.
int Draw(const FrequencyTable& t, Rng& rng) {
  const uint32_t v =
      static_cast<uint32_t>(rng.UniformInt(int64_t{1} << t.precision_bits()));
  return t.SymbolForCumulative(v);
}

std::vector<uint8_t> Encode(const Message& msg) {
  RansEncoder enc;
  for (size_t k = 0; k < msg.symbols.size(); ++k) {
    absl::Status s = EncodeSymbol(enc, *msg.tables[k], msg.symbols[k]);
    EXPECT_TRUE(s.ok()) << s;
  }
  return enc.Finish();
}

// Decodes msg.symbols.size() symbols with msg's tables; OK only if Finish()
// accepts the stream.
absl::StatusOr<std::vector<int>> Decode(const Message& msg,
                                        absl::Span<const uint8_t> bytes) {
  absl::StatusOr<RansDecoder> dec = RansDecoder::Create(bytes);
  if (!dec.ok()) return dec.status();
  std::vector<int> out;
  out.reserve(msg.symbols.size());
  for (size_t k = 0; k < msg.symbols.size(); ++k) {
    absl::StatusOr<int> s = DecodeSymbol(*dec, *msg.tables[k]);
    if (!s.ok()) return s.status();
    out.push_back(*s);
  }
  if (absl::Status s = dec->Finish(); !s.ok()) return s;
  return out;
}

// The bounds of rans.h on the stream length B (bytes), against the ideal
// length sum -log2(f / 2^p) of the quantised model.
void ExpectLengthWithinBounds(const Message& msg, size_t bytes) {
  double ideal = 0.0, upper_slack = 0.0, lower_slack = 0.0;
  for (size_t k = 0; k < msg.symbols.size(); ++k) {
    const FrequencyTable& t = *msg.tables[k];
    const int p = t.precision_bits();
    ideal -= std::log2(t.freq(msg.symbols[k]) / std::ldexp(1.0, p));
    upper_slack += std::log2(1.0 + std::ldexp(1.0, p - 31));
    lower_slack += p <= 30 ? 2.0 * std::log2(1.0 - std::ldexp(1.0, p - 31))
                           : -std::numeric_limits<double>::infinity();
  }
  const double bits = 8.0 * static_cast<double>(bytes);
  const double rounding = 1e-9 * ideal + 1e-6;  // of the sum above
  EXPECT_LE(bits, ideal + 64.0 + upper_slack + rounding) << "ideal " << ideal;
  EXPECT_GE(bits, ideal + 32.0 + lower_slack - rounding) << "ideal " << ideal;
}

void ExpectRoundTrip(const Message& msg) {
  const std::vector<uint8_t> bytes = Encode(msg);
  absl::StatusOr<std::vector<int>> decoded = Decode(msg, bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->size(), msg.symbols.size());
  EXPECT_TRUE(*decoded == msg.symbols);
  ExpectLengthWithinBounds(msg, bytes.size());
}

std::vector<double> RandomMasses(int k, Rng& rng, double zero_fraction) {
  std::vector<double> q(k);
  for (double& v : q) v = rng.Uniform() < zero_fraction ? 0.0 : rng.Uniform();
  q[rng.UniformInt(k)] = 1.0;  // never all zero
  return q;
}

TEST(RansTest, StaticTableRoundTrip) {
  Rng rng(1);
  for (int p : {8, 12, 16, 24}) {
    Message msg;
    std::vector<double> q(256);
    for (int i = 0; i < 256; ++i) q[i] = std::exp(-0.05 * i);  // skewed
    const auto table = MakeTable(q, p);
    for (int k = 0; k < 100000; ++k) {
      msg.tables.push_back(table);
      msg.symbols.push_back(Draw(*table, rng));
    }
    ExpectRoundTrip(msg);
  }
}

TEST(RansTest, PerSymbolDistributions) {
  Rng rng(2);
  Message msg;
  for (int k = 0; k < 20000; ++k) {
    const int num = 1 + static_cast<int>(rng.UniformInt(300));
    const int min_p = std::max(1, static_cast<int>(std::ceil(std::log2(num))));
    const int p = min_p + static_cast<int>(rng.UniformInt(32 - min_p));
    const auto table = MakeTable(RandomMasses(num, rng, 0.2), p);
    msg.tables.push_back(table);
    msg.symbols.push_back(Draw(*table, rng));
  }
  ExpectRoundTrip(msg);
}

TEST(RansTest, LogisticTablesPerSymbol) {
  // The integer-discrete-flow case: each pixel under its own logistic.
  Rng rng(3);
  Message msg;
  for (int k = 0; k < 5000; ++k) {
    const double mu = 255.0 * rng.Uniform();
    const double s = std::exp(-3.0 + 6.0 * rng.Uniform());
    absl::StatusOr<std::vector<uint32_t>> f =
        DiscretizedLogisticFrequencies(mu, s, 256, 16);
    ASSERT_TRUE(f.ok());
    auto table = std::make_shared<const FrequencyTable>(
        FrequencyTable::Create(*f, 16).value());
    msg.tables.push_back(table);
    msg.symbols.push_back(Draw(*table, rng));
  }
  ExpectRoundTrip(msg);
}

TEST(RansTest, ExtremeDistributions) {
  Rng rng(4);
  for (int p : {9, 16, 31}) {
    // One symbol at 2^p - 255, the other 255 at frequency 1.
    std::vector<uint32_t> f(256, 1);
    f[0] = (uint32_t{1} << p) - 255;
    auto table = std::make_shared<const FrequencyTable>(
        FrequencyTable::Create(f, p).value());
    Message msg;
    for (int k = 0; k < 50000; ++k) {
      msg.tables.push_back(table);
      // Mostly the likely symbol, with runs of the unlikely ones.
      msg.symbols.push_back(
          k % 1000 < 20 ? 1 + static_cast<int>(rng.UniformInt(255)) : 0);
    }
    ExpectRoundTrip(msg);
  }
  // A certain symbol (freq = 2^p) costs nothing: the stream is the bare
  // flush.
  auto certain = std::make_shared<const FrequencyTable>(
      FrequencyTable::Create({0, 1u << 20, 0}, 20).value());
  Message msg;
  for (int k = 0; k < 1000; ++k) {
    msg.tables.push_back(certain);
    msg.symbols.push_back(1);
  }
  EXPECT_EQ(Encode(msg).size(), 8u);
  ExpectRoundTrip(msg);
}

TEST(RansTest, LongStreamNearTheEntropy) {
  Rng rng(5);
  const int k = 64;
  std::vector<double> q(k);
  for (int i = 0; i < k; ++i) q[i] = 1.0 / (1.0 + i);  // Zipf
  const double total = std::accumulate(q.begin(), q.end(), 0.0);
  double entropy = 0.0;
  for (double v : q) entropy -= v / total * std::log2(v / total);
  const auto table = MakeTable(q, 16);
  Message msg;
  const int n = 1000000;
  double sample_cost_q = 0.0;  // -sum log2 q(s) under the unquantised model
  for (int t = 0; t < n; ++t) {
    msg.tables.push_back(table);
    msg.symbols.push_back(Draw(*table, rng));
    sample_cost_q -= std::log2(q[msg.symbols.back()] / total);
  }
  const std::vector<uint8_t> bytes = Encode(msg);
  ExpectLengthWithinBounds(msg, bytes.size());
  const double bits = 8.0 * bytes.size();
  // Against the unquantised model on this sample: flush + < 0.1%.
  EXPECT_LE(bits, sample_cost_q * 1.001 + 64.0);
  // And against n H(q): the sample cost is n H +- 5 sigma (sigma^2 = n Var).
  double var = 0.0;
  for (double v : q) {
    const double c = -std::log2(v / total) - entropy;
    var += v / total * c * c;
  }
  EXPECT_NEAR(sample_cost_q, n * entropy, 5.0 * std::sqrt(n * var));
  EXPECT_LE(bits / n, entropy * 1.001 + 5.0 * std::sqrt(var / n) + 64.0 / n);
  absl::StatusOr<std::vector<int>> decoded = Decode(msg, bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == msg.symbols);
}

TEST(RansTest, KnownStream) {
  // One symbol [0, 1) at p = 2 from x = L = 2^31: x' = floor(2^31 / 1) 4 =
  // 2^33, no renormalisation; the stream is x' as 8 little-endian bytes.
  RansEncoder enc;
  ASSERT_TRUE(enc.Put(0, 1, 2).ok());
  EXPECT_EQ(enc.Finish(), (std::vector<uint8_t>{0, 0, 0, 0, 2, 0, 0, 0}));
  // Nothing coded: the flush of L.
  EXPECT_EQ(enc.Finish(), (std::vector<uint8_t>{0, 0, 0, 0x80, 0, 0, 0, 0}));
  absl::StatusOr<RansDecoder> dec =
      RansDecoder::Create(std::vector<uint8_t>{0, 0, 0, 0x80, 0, 0, 0, 0});
  ASSERT_TRUE(dec.ok());
  EXPECT_TRUE(dec->Finish().ok());
  // Two symbols of probability 1/2 at p = 1: two bits of information, far
  // below a renormalisation; x = ((2^31 * 2 + 1) * 2 + 0) for "1 then 0"
  // (encoded last to first: 0 first, then 1).
  ASSERT_TRUE(enc.Put(1, 1, 1).ok());
  ASSERT_TRUE(enc.Put(0, 1, 1).ok());
  const std::vector<uint8_t> two = enc.Finish();
  const uint64_t x = ((uint64_t{1} << 31) * 2 + 0) * 2 + 1;
  std::vector<uint8_t> expected(8);
  for (int b = 0; b < 8; ++b) expected[b] = static_cast<uint8_t>(x >> (8 * b));
  EXPECT_EQ(two, expected);
}

Message ShortMessage(Rng& rng, int n) {
  Message msg;
  for (int k = 0; k < n; ++k) {
    const int num = 2 + static_cast<int>(rng.UniformInt(20));
    auto table = MakeTable(RandomMasses(num, rng, 0.0), 12);
    msg.tables.push_back(table);
    msg.symbols.push_back(Draw(*table, rng));
  }
  return msg;
}

TEST(RansTest, EveryTruncationIsAnError) {
  Rng rng(6);
  for (int rep = 0; rep < 5; ++rep) {
    const Message msg = ShortMessage(rng, 60);
    const std::vector<uint8_t> bytes = Encode(msg);
    ASSERT_GT(bytes.size(), 16u);
    for (size_t len = 0; len < bytes.size(); ++len) {
      // A copy of exactly `len` bytes, so ASan sees any over-read.
      const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + len);
      absl::StatusOr<std::vector<int>> decoded = Decode(msg, prefix);
      EXPECT_FALSE(decoded.ok())
          << "prefix of " << len << " of " << bytes.size() << " bytes decoded";
    }
  }
}

TEST(RansTest, CorruptionGivesTheOriginalOrAnError) {
  Rng rng(7);
  int errors = 0, benign = 0;
  const int trials = 3000;
  for (int t = 0; t < trials; ++t) {
    const Message msg = ShortMessage(rng, 40);
    std::vector<uint8_t> bytes = Encode(msg);
    const int flips = 1 + static_cast<int>(rng.UniformInt(3));
    for (int f = 0; f < flips; ++f) {
      bytes[rng.UniformInt(bytes.size())] ^=
          static_cast<uint8_t>(1 + rng.UniformInt(255));
    }
    absl::StatusOr<std::vector<int>> decoded = Decode(msg, bytes);
    if (!decoded.ok()) {
      ++errors;
      EXPECT_TRUE(decoded.status().code() == absl::StatusCode::kDataLoss ||
                  decoded.status().code() == absl::StatusCode::kInvalidArgument)
          << decoded.status();
    } else {
      // Only acceptable if the symbols are the originals.
      EXPECT_TRUE(*decoded == msg.symbols) << "silent corruption, trial " << t;
      ++benign;
    }
  }
  std::printf("corruption: %d errors, %d benign of %d trials\n", errors, benign,
              trials);
  // A changed stream never re-encodes from the original symbols (rans.h), so
  // nothing here is benign except flips that cancel each other.
  EXPECT_GT(errors, trials * 9 / 10);
}

TEST(RansTest, WrongSymbolCountOrExtraBytesAreErrors) {
  Rng rng(8);
  const Message msg = ShortMessage(rng, 50);
  std::vector<uint8_t> bytes = Encode(msg);
  Message fewer = msg;
  fewer.symbols.pop_back();
  fewer.tables.pop_back();
  EXPECT_FALSE(Decode(fewer, bytes).ok());
  Message more = msg;
  more.symbols.push_back(0);
  more.tables.push_back(msg.tables[0]);
  EXPECT_FALSE(Decode(more, bytes).ok());
  std::vector<uint8_t> longer = bytes;
  longer.insert(longer.end(), {1, 2, 3, 4});
  EXPECT_FALSE(Decode(msg, longer).ok());
  longer.push_back(5);  // not 8 + 4 W
  EXPECT_EQ(RansDecoder::Create(longer).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_TRUE(Decode(msg, bytes).ok());
}

TEST(RansTest, RandomBytesNeverCrash) {
  // Arbitrary input: decode a fixed number of symbols from random streams;
  // the decoder must stay in bounds and end in a status (OK is possible only
  // for an exact encoding of the decoded symbols).
  Rng rng(9);
  auto table = MakeTable(RandomMasses(37, rng, 0.3), 15);
  for (int t = 0; t < 2000; ++t) {
    std::vector<uint8_t> bytes(8 + 4 * rng.UniformInt(6));
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng.UniformInt(256));
    absl::StatusOr<RansDecoder> dec = RansDecoder::Create(bytes);
    if (!dec.ok()) continue;
    for (int k = 0; k < 30; ++k) {
      if (!DecodeSymbol(*dec, *table).ok()) break;
    }
    (void)dec->Finish();
  }
}

TEST(RansTest, ArgumentErrors) {
  RansEncoder enc;
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(enc.Put(0, 0, 8).code(), kBad);     // zero frequency
  EXPECT_EQ(enc.Put(200, 57, 8).code(), kBad);  // past 2^8
  EXPECT_EQ(enc.Put(0, 1, 0).code(), kBad);
  EXPECT_EQ(enc.Put(0, 1, 32).code(), kBad);
  EXPECT_EQ(enc.num_symbols(), 0u);
  ASSERT_TRUE(enc.Put(200, 56, 8).ok());
  ASSERT_TRUE(enc.Put(3, 5, 8).ok());
  const std::vector<uint8_t> bytes = enc.Finish();

  absl::StatusOr<RansDecoder> dec = RansDecoder::Create(bytes);
  ASSERT_TRUE(dec.ok());
  const uint32_t slot = dec->Peek(8);
  EXPECT_GE(slot, 200u);
  // A symbol that does not contain the slot: error, and it sticks.
  EXPECT_EQ(dec->Advance(0, 10, 8).code(), kBad);
  EXPECT_EQ(dec->Peek(8), 0u);
  EXPECT_EQ(dec->Advance(200, 56, 8).code(), kBad);
  EXPECT_EQ(dec->Finish().code(), kBad);

  dec = RansDecoder::Create(bytes);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec->Peek(0), 0u);
  EXPECT_EQ(dec->Advance(200, 56, 40).code(), kBad);

  EXPECT_EQ(RansDecoder::Create(std::vector<uint8_t>(4, 0)).status().code(),
            absl::StatusCode::kDataLoss);
  // Initial state below L.
  EXPECT_EQ(RansDecoder::Create(std::vector<uint8_t>(8, 0)).status().code(),
            absl::StatusCode::kDataLoss);
  // Initial state >= 2^63.
  std::vector<uint8_t> high(8, 0);
  high[7] = 0x80;
  EXPECT_EQ(RansDecoder::Create(high).status().code(),
            absl::StatusCode::kDataLoss);

  auto table = MakeTable({0.5, 0.0, 0.5}, 4);
  RansEncoder enc2;
  EXPECT_EQ(EncodeSymbol(enc2, *table, 1).code(), kBad);  // frequency 0
  EXPECT_EQ(EncodeSymbol(enc2, *table, 3).code(), kBad);
  EXPECT_EQ(EncodeSymbol(enc2, *table, -1).code(), kBad);
}

}  // namespace
}  // namespace flowtape::compression
