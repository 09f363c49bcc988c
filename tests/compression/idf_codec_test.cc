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

namespace flowtape::compression {
namespace {

IdfOptions Small() {
  IdfOptions o;
  o.height = 6;
  o.width = 5;
  o.couplings = 4;
  o.hidden = {16};
  o.components = 3;
  return o;
}

std::shared_ptr<IntegerDiscreteFlow> MakeFlow(uint64_t seed,
                                              double scale = 0.5) {
  Rng rng(seed);
  auto flow = IntegerDiscreteFlow::Create(Small(), rng);
  EXPECT_TRUE(flow.ok());
  Rng noise(seed + 100);
  for (auto& [name, p] : (*flow)->NamedParameters()) {
    double* v = p.mutable_data<double>();
    if (name.rfind("coupling", 0) == 0) {
      for (int64_t i = 0; i < p.numel(); ++i) v[i] = scale * noise.Normal();
    } else {  // a different prior (and table) per latent
      for (int64_t i = 0; i < p.numel(); ++i) v[i] += 0.3 * noise.Normal();
    }
  }
  return *flow;
}

IdfImages RandomImages(int64_t n, uint64_t seed) {
  Rng rng(seed);
  IdfImages im;
  im.count = n;
  im.height = 6;
  im.width = 5;
  for (int64_t i = 0; i < n * 30; ++i) {
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
  std::vector<int64_t> x(30), z(30), back(30);
  std::vector<double> xs;
  for (int n = 0; n < 40; ++n) {
    for (auto& v : x) v = static_cast<int64_t>(rng.UniformInt(256));
    codec.Forward(x, absl::MakeSpan(z));
    codec.Inverse(z, absl::MakeSpan(back));
    ASSERT_EQ(back, x);
    NoGradScope no_grad;
    std::vector<double> xd(x.begin(), x.end());
    Tensor zm = flow->Forward(Tensor::FromVector({1, 30}, xd));
    for (int i = 0; i < 30; ++i) ASSERT_EQ(zm[i], static_cast<double>(z[i]));
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
  EXPECT_EQ(back->width, 5);
  EXPECT_EQ(back->pixels, images.pixels);
  // The stream is the ideal code length within rans.h's bound.
  const double stream_bits = 8.0 * (bytes->size() - 44);
  EXPECT_LE(stream_bits, stats.ideal_bits + 64 + 0.0011 * 25 * 30);
  EXPECT_GE(stream_bits, stats.ideal_bits + 32 - 0.0011 * 25 * 30);
}

// Large translations push latents beyond both edges of the window; prior
// means far outside it make the edge symbols likely.
TEST(IdfCodecTest, EscapedLatentsRoundTrip) {
  auto flow = MakeFlow(5, 30.0);
  Tensor means = flow->prior_means();
  double* m = means.mutable_data<double>();
  for (int64_t i = 0; i < flow->prior_means().numel(); ++i) {
    m[i] = ((i % 2 == 0) ? -2000.0 : 3000.0) / kIdfMeanUnit;
  }
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

// The ideal code length is the model's NLL up to the quantisation of the
// tables (every latent of these images is inside the window, and with
// scales of 30 no latent is below the tables' floor of 2^-18).
TEST(IdfCodecTest, IdealBitsMatchTheModelNll) {
  auto flow = MakeFlow(7, 0.05);
  Tensor log_scales = flow->prior_log_scales();
  for (int64_t i = 0; i < log_scales.numel(); ++i) {
    log_scales.mutable_data<double>()[i] = std::log(30.0) / kIdfLogScaleUnit;
  }
  IdfCodec codec = MakeCodec(*flow);
  IdfImages images = RandomImages(10, 8);
  IdfCodeStats stats;
  ASSERT_TRUE(codec.Compress(images, &stats).ok());
  ASSERT_EQ(stats.escapes, 0);
  std::vector<double> xd(images.pixels.begin(), images.pixels.end());
  const double nll_bits =
      IdfBitsPerDim(*flow, Tensor::FromVector({10, 1, 6, 5}, xd)) * 300;
  EXPECT_NEAR(stats.ideal_bits, nll_bits, 0.001 * 300);
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
            std::vector<uint8_t>(images.pixels.begin() + 60,
                                 images.pixels.begin() + 150));
  auto outside =
      CompressIdxFile(dir + "/m.ckpt", dir + "/in.idx", 5, 3, dir + "/z.idfc");
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::compression
