// IDF coding (compression/idf_codec.h, idf_files.h): the deterministic
// integer map, container round trips, identical bytes from two encodes and
// from a reloaded model file, the ideal code length against the model's NLL,
// and clear errors for every truncation, random byte flips and a different
// model.
#include "compression/idf_codec.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "autodiff/rng.h"
#include "autodiff/tape.h"
#include "compression/idf.h"
#include "compression/idf_files.h"
#include "gtest/gtest.h"
#include "zlib.h"

namespace flowtape::compression {
namespace {

// 6 x 4: 4 x 3 x 2 (factor 2) -> 2 x 3 x 2 (factor 1) -> final 1 x 3 x 2.
IdfOptions Small() {
  IdfOptions o;
  o.height = 6;
  o.width = 4;
  o.levels = {{true, 2}, {false, 1}, {false, 0}};
  o.hidden = {8};
  o.components = 3;
  return o;
}
constexpr int64_t kD = 24;

bool IsCoupling(const std::string& name) {
  return name.find(".coupling") != std::string::npos;
}

// Couplings N(0, scale^2); every prior parameter moved by N(0, 0.3^2)
// (prior nets: 0.05), so every latent has its own table.
std::shared_ptr<IntegerDiscreteFlow> MakeFlow(uint64_t seed,
                                              double scale = 0.5) {
  Rng rng(seed);
  auto flow = IntegerDiscreteFlow::Create(Small(), rng);
  EXPECT_TRUE(flow.ok());
  Rng noise(seed + 100);
  for (auto& [name, p] : (*flow)->NamedParameters()) {
    double* v = p.mutable_data<double>();
    const double s = IsCoupling(name)                            ? scale
                     : name.find(".prior.") != std::string::npos ? 0.05
                                                                 : 0.3;
    for (int64_t i = 0; i < p.numel(); ++i) {
      v[i] = IsCoupling(name) ? s * noise.Normal() : v[i] + s * noise.Normal();
    }
  }
  return *flow;
}

// Sets every prior's means (pixel units, by latent index parity for the
// final prior, by component for the conditional ones) and scales.
void SetPriors(const IntegerDiscreteFlow& flow, double even_mean,
               double odd_mean, double scale) {
  const IdfOptions& o = flow.options();
  const int kc = o.components;
  Tensor m = flow.prior_means(), g = flow.prior_log_scales();
  for (int64_t i = 0; i < m.numel(); ++i) {
    m.mutable_data<double>()[i] =
        ((i / kc) % 2 == 0 ? even_mean : odd_mean) / kIdfMeanUnit;
    g.mutable_data<double>()[i] = std::log(scale) / kIdfLogScaleUnit;
  }
  for (int l = 0; l + 1 < static_cast<int>(o.levels.size()); ++l) {
    const auto& last = flow.prior_net(l).layers().back();
    Tensor w = last->weight(), b = last->bias();
    for (int64_t i = 0; i < w.numel(); ++i) w.mutable_data<double>()[i] = 0;
    const int64_t f = o.LevelShape(l).factored();
    for (int64_t i = 0; i < f * kc; ++i) {
      b.mutable_data<double>()[f * kc + i] =
          (i % 2 == 0 ? even_mean : odd_mean) / kIdfNetMeanUnit;
      b.mutable_data<double>()[2 * f * kc + i] =
          std::log(scale) / kIdfNetLogScaleUnit;
    }
  }
}

IdfImages RandomImages(int64_t n, uint64_t seed) {
  Rng rng(seed);
  IdfImages im;
  im.count = n;
  im.height = 6;
  im.width = 4;
  for (int64_t i = 0; i < n * kD; ++i) {
    // Mostly dark with bright strokes, like MNIST, plus the extremes.
    const double u = rng.Uniform();
    im.pixels.push_back(u < 0.6 ? 0 : u < 0.7 ? 255 : rng.UniformInt(256));
  }
  return im;
}

IdfCodec MakeCodec(const IntegerDiscreteFlow& flow) {
  auto codec = IdfCodec::Create(flow);
  EXPECT_TRUE(codec.ok()) << codec.status();
  return std::move(*codec);
}

TEST(IdfCodecTest, IntegerMapIsExactAndAgreesWithTheModel) {
  auto flow = MakeFlow(1);
  IdfCodec codec = MakeCodec(*flow);
  Rng rng(2);
  std::vector<int64_t> x(kD), z(kD), back(kD);
  std::vector<double> xs;
  for (int n = 0; n < 40; ++n) {
    for (auto& v : x) v = static_cast<int64_t>(rng.UniformInt(256));
    codec.Forward(x, absl::MakeSpan(z));
    codec.Inverse(z, absl::MakeSpan(back));
    ASSERT_EQ(back, x);
    NoGradScope no_grad;
    std::vector<double> xd(x.begin(), x.end());
    Tensor zm = flow->Forward(Tensor::FromVector({1, kD}, xd));
    for (int i = 0; i < kD; ++i) ASSERT_EQ(zm[i], static_cast<double>(z[i]));
  }
}

TEST(IdfCodecTest, ContainerRoundTripIsBitExact) {
  auto flow = MakeFlow(3);
  IdfCodec codec = MakeCodec(*flow);
  IdfImages images = RandomImages(25, 4);
  IdfCodeStats stats;
  auto bytes = codec.Compress(images, &stats);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto back = codec.Decompress(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->count, 25);
  EXPECT_EQ(back->height, 6);
  EXPECT_EQ(back->width, 4);
  EXPECT_EQ(back->pixels, images.pixels);
  // The stream is the ideal code length within rans.h's bound.
  const double stream_bits = 8.0 * (bytes->size() - 44);
  EXPECT_LE(stream_bits, stats.ideal_bits + 64 + 0.0011 * 25 * kD);
  EXPECT_GE(stream_bits, stats.ideal_bits + 32 - 0.0011 * 25 * kD);
}

// Large translations push latents beyond both edges of the window; prior
// means far outside it make the edge symbols likely.
TEST(IdfCodecTest, EscapedLatentsRoundTrip) {
  auto flow = MakeFlow(5, 30.0);
  SetPriors(*flow, -2000.0, 3000.0, 8.0);
  IdfCodec codec = MakeCodec(*flow);
  IdfImages images = RandomImages(3, 6);
  IdfCodeStats stats;
  auto bytes = codec.Compress(images, &stats);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_GT(stats.escapes, 20);
  auto back = codec.Decompress(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->pixels, images.pixels);
}

// The container is the model's NLL plus a few bytes: every latent of these
// images is inside the window, with scales of 30 none is near the tables'
// floor, so each symbol costs at most -log2(1 - 768 / 2^18) = 0.0043 bits
// more than -log2 P(z) (QuantizeCumulative; and at most log2(1 + 2 /
// (P(z) 2^18)) less, < 0.012 bits for P(z) > 1e-3 as here); then
// rans.h's flush (<= 8 bytes) and 0.0011 bits per symbol, and the 44 bytes
// of header and checksum.
TEST(IdfCodecTest, CodeLengthIsTheModelNllPlusAFewBytes) {
  auto flow = MakeFlow(7, 0.05);
  SetPriors(*flow, 100.0, 150.0, 30.0);
  // Context-dependent conditional priors again (small last-layer weights).
  Rng rng(70);
  for (int l = 0; l < 2; ++l) {
    Tensor w = flow->prior_net(l).layers().back()->weight();
    for (int64_t i = 0; i < w.numel(); ++i) {
      w.mutable_data<double>()[i] = 0.05 * rng.Normal();
    }
  }
  IdfCodec codec = MakeCodec(*flow);
  const int64_t n = 40, symbols = n * kD;
  IdfImages images = RandomImages(n, 8);
  IdfCodeStats stats;
  auto bytes = codec.Compress(images, &stats);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_EQ(stats.escapes, 0);
  std::vector<double> xd(images.pixels.begin(), images.pixels.end());
  const double nll_bits =
      IdfBitsPerDim(*flow, Tensor::FromVector({n, 1, 6, 4}, xd)) * symbols;
  EXPECT_LE(stats.ideal_bits, nll_bits + 0.0043 * symbols);
  EXPECT_GE(stats.ideal_bits, nll_bits - 0.012 * symbols);
  const double file_bits = 8.0 * bytes->size();
  EXPECT_LE(file_bits, nll_bits + 0.0054 * symbols + 8 * (44 + 8));
  EXPECT_GE(file_bits, nll_bits - 0.0131 * symbols + 8 * (44 + 4));
}

TEST(IdfCodecTest, EncodingIsDeterministicAcrossRunsAndModelFiles) {
  auto flow = MakeFlow(9);
  IdfImages images = RandomImages(12, 10);
  auto a = MakeCodec(*flow).Compress(images);
  auto b = MakeCodec(*flow).Compress(images);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  const std::string path =
      std::string(std::getenv("TEST_TMPDIR")) + "/codec_model.ckpt";
  ASSERT_TRUE(SaveIdf(path, *flow).ok());
  auto loaded = LoadIdf(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto c = MakeCodec(**loaded).Compress(images);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*a, *c);
}

TEST(IdfCodecTest, EveryTruncationIsDataLoss) {
  auto flow = MakeFlow(11);
  IdfCodec codec = MakeCodec(*flow);
  auto bytes = codec.Compress(RandomImages(4, 12));
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    auto r = codec.Decompress(absl::string_view(*bytes).substr(0, n));
    ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss)
        << n << " bytes: " << r.status();
    ASSERT_NE(r.status().message().find("truncated"), std::string::npos)
        << r.status();
  }
  auto longer = codec.Decompress(*bytes + "x");
  EXPECT_EQ(longer.status().code(), absl::StatusCode::kDataLoss);
}

TEST(IdfCodecTest, RandomByteFlipsAreErrors) {
  auto flow = MakeFlow(13);
  IdfCodec codec = MakeCodec(*flow);
  auto bytes = codec.Compress(RandomImages(4, 14));
  ASSERT_TRUE(bytes.ok());
  Rng rng(15);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bad = *bytes;
    const size_t at = rng.UniformInt(bad.size());
    bad[at] = static_cast<char>(bad[at] ^ (1 + rng.UniformInt(255)));
    auto r = codec.Decompress(bad);
    ASSERT_FALSE(r.ok()) << "flip at byte " << at << " decoded";
    const auto code = r.status().code();
    ASSERT_TRUE(code == absl::StatusCode::kDataLoss ||
                code == absl::StatusCode::kInvalidArgument)
        << r.status();
  }
}

// A container made with another model (or for another shape) is refused by
// name, and a header whose count the stream cannot hold is refused before
// decoding.
TEST(IdfCodecTest, WrongModelAndImpossibleCountsAreRefused) {
  auto bytes = MakeCodec(*MakeFlow(16)).Compress(RandomImages(2, 17));
  ASSERT_TRUE(bytes.ok());
  auto r = MakeCodec(*MakeFlow(18)).Decompress(*bytes);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("model id"), std::string::npos)
      << r.status();
  auto parsed = ParseIdfContainer(*bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->count, 2);
  EXPECT_EQ(parsed->height, 6);
}

// A version-1 container (the single-scale flow's format) is refused by name.
TEST(IdfCodecTest, Version1ContainersAreRefused) {
  auto bytes = MakeCodec(*MakeFlow(21)).Compress(RandomImages(2, 22));
  ASSERT_TRUE(bytes.ok());
  std::string old = *bytes;
  old[8] = 1;
  const uint32_t crc =
      static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(old.data()),
                                  static_cast<uInt>(old.size() - 4)));
  for (int i = 0; i < 4; ++i) {
    old[old.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  }
  auto r = ParseIdfContainer(old);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("version 1 (single-scale model)"),
            std::string::npos)
      << r.status();
  EXPECT_EQ(ParseIdfContainer(*bytes)->version, 2u);
}

TEST(IdfCodecTest, CommandsRoundTripIdxFilesByteForByte) {
  const std::string dir = std::getenv("TEST_TMPDIR");
  auto flow = MakeFlow(19);
  ASSERT_TRUE(SaveIdf(dir + "/m.ckpt", *flow).ok());
  IdfImages images = RandomImages(7, 20);
  const std::string idx = IdxImageBytes(images);
  std::ofstream(dir + "/in.idx", std::ios::binary) << idx;
  auto report =
      CompressIdxFile(dir + "/m.ckpt", dir + "/in.idx", 0, -1, dir + "/x.idfc");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->count, 7);
  auto back =
      DecompressToIdx(dir + "/m.ckpt", dir + "/x.idfc", dir + "/out.idx");
  ASSERT_TRUE(back.ok()) << back.status();
  std::ifstream f(dir + "/out.idx", std::ios::binary);
  std::stringstream got;
  got << f.rdbuf();
  EXPECT_EQ(got.str(), idx);
  // A sub-range.
  auto part =
      CompressIdxFile(dir + "/m.ckpt", dir + "/in.idx", 2, 3, dir + "/y.idfc");
  ASSERT_TRUE(part.ok()) << part.status();
  auto part_back =
      DecompressToIdx(dir + "/m.ckpt", dir + "/y.idfc", dir + "/y.idx");
  ASSERT_TRUE(part_back.ok());
  EXPECT_EQ(part_back->pixels,
            std::vector<uint8_t>(images.pixels.begin() + 2 * kD,
                                 images.pixels.begin() + 5 * kD));
  auto outside =
      CompressIdxFile(dir + "/m.ckpt", dir + "/in.idx", 5, 3, dir + "/z.idfc");
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::compression
