// Golden bytes of the two codecs (compression/idf_codec.h, lossy.h): a model
// and a set of images built from fixed seeds are encoded, and the container's
// length and CRC-32 (zlib) must equal constants checked in here; decoding must
// give the images back bit for bit. Both containers end with the CRC-32 of
// the bytes before it, and the CRC-32 of any message followed by its own
// CRC-32 is the same constant (0x2144DF1C): the pinned CRC is that of every
// byte but the 4-byte trailer (it determines the trailer).
//
// idf_codec.h promises that a model file and images give the same bytes on
// every platform with IEEE binary64 and round-to-nearest (any libm, compiler
// or -march), lossy.h the same when the flow's latents are exact. The other
// tests compare two encodes in one process, which a change shared by encoder
// and decoder cannot fail; these constants pin the bytes across builds. CI
// runs this target in the default build (-O1) and again in --config=opt (-O2
// -march=native, where compilers may fuse a * b + c into one rounding): both
// must give the constants below. A changed last bit of a probability rarely
// moves an integer frequency, so the bytes usually absorb it; a third test
// pins the float64 values before quantisation bit for bit (deterministic_math
// at seeded inputs, the golden model's mixture masses), which a build of the
// codec's targets with fused multiply-adds does change.
//
// A change in a constant means the coded format or the arithmetic that feeds
// the coder (deterministic_math, frequencies, the codec's convnets, rounding,
// the rANS stream, the container) changed: files written before the change
// no longer decode, or decode differently. Such a change needs a new
// container version, not new constants. The constants were printed by this
// test (the failure messages give the values computed) and pasted in once.
//
// Only the codecs' own arithmetic is pinned: every model parameter is set
// here from flowtape::Rng (Philox, pinned by tests/autodiff:rng_test) with
// power-of-two scales, so a parameter is a sum with at most one rounding
// that a fused multiply-add cannot change; the nn initialisers and the
// IDF model's initial log-scale (libm's log) do not enter. The lossy model's
// flow is a permutation with the identity pixel map, so its latents are the
// pixels exactly: lossy.h gives no cross-platform promise for the latents of
// a general flow (ordinary float code), only for the tables and the symbols
// the decoder reads.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "compression/deterministic_math.h"
#include "compression/frequencies.h"
#include "compression/idf.h"
#include "compression/idf_codec.h"
#include "compression/lossy.h"
#include "flows/permute.h"
#include "gtest/gtest.h"
#include "zlib.h"

namespace flowtape::compression {
namespace {

// CRC-32 of a container without its 4-byte CRC trailer.
uint32_t BodyCrc(const void* data, size_t n) {
  EXPECT_GE(n, 4u);
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0),
                                     static_cast<const Bytef*>(data),
                                     static_cast<uInt>(n < 4 ? 0 : n - 4)));
}

// CRC-32 of the bit patterns of `values`, each as 8 little-endian bytes.
uint32_t BitsCrc(const std::vector<double>& values) {
  std::string bytes;
  for (double v : values) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    for (int b = 0; b < 8; ++b)
      bytes.push_back(static_cast<char>(bits >> (8 * b)));
  }
  return static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()),
            static_cast<uInt>(bytes.size())));
}

// A double with a random 52-bit mantissa and the binary exponent e.
double RandomWithExponent(Rng& rng, int e) {
  const uint64_t bits =
      (static_cast<uint64_t>(e + 1023) << 52) | (rng.Bits64() >> 12);
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

// ---- IDF (lossless) ----

// 8 x 8: level 0 squeezes to 4 x 4 x 4 (two couplings, factors out 2
// channels), level 1 couples the 2 x 4 x 4 kept channels twice and factors
// out 1, the final 1 x 4 x 4 has its own prior.
IdfOptions GoldenIdfOptions() {
  IdfOptions o;
  o.height = 8;
  o.width = 8;
  o.levels = {{true, 2}, {false, 2}, {false, 0}};
  o.hidden = {8};
  o.components = 3;
  return o;
}

// Every parameter from Rng(seed), with scales that are powers of two:
// couplings N(0, 1), the first coupling's last bias +-256 (latents beyond the
// table's edges: escapes); prior nets N(0, 1/16^2) weights, last biases
// logit N(0, 1/4^2), mean mu0_c + N(0, 16^2), log-scale 2 + N(0, 1/4^2);
// the final prior likewise in its units (mean / 32, log-scale / 4).
std::shared_ptr<IntegerDiscreteFlow> GoldenIdf(uint64_t seed) {
  const IdfOptions o = GoldenIdfOptions();
  Rng init(seed);
  absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> made =
      IntegerDiscreteFlow::Create(o, init);
  EXPECT_TRUE(made.ok()) << made.status();
  std::shared_ptr<IntegerDiscreteFlow> flow = *made;
  Rng rng(seed + 1);
  const int kc = o.components;
  const double mu0_step = 255.0 / (kc - 1);  // 127.5, exact
  auto fill = [&](Tensor t, double scale) {
    double* v = t.mutable_data<double>();
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = scale * rng.Normal();
  };
  const int num_levels = static_cast<int>(o.levels.size());
  for (int l = 0; l < num_levels; ++l) {
    for (int k = 0; k < o.levels[l].couplings; ++k) {
      for (const auto& layer : flow->coupling(l, k).layers()) {
        fill(layer->weight(), 1.0);
        fill(layer->bias(), 1.0);
      }
    }
  }
  Tensor escape_bias = flow->coupling(0, 0).layers().back()->bias();
  for (int64_t i = 0; i < escape_bias.numel(); ++i) {
    escape_bias.mutable_data<double>()[i] = 256.0 * rng.Rademacher();
  }
  for (int l = 0; l + 1 < num_levels; ++l) {
    const auto& layers = flow->prior_net(l).layers();
    for (const auto& layer : layers) {
      fill(layer->weight(), 1.0 / 16);
      fill(layer->bias(), 1.0 / 16);
    }
    // Output channel (p F + f) K + c: p = 0 logit, 1 mean, 2 log-scale.
    Tensor b = layers.back()->bias();
    const int64_t fk = o.LevelShape(l).factored() * kc;
    double* v = b.mutable_data<double>();
    for (int64_t j = 0; j < b.numel(); ++j) {
      const int64_t p = j / fk, c = j % kc;
      v[j] = p == 0   ? 0.25 * rng.Normal()
             : p == 1 ? c * mu0_step + 16.0 * rng.Normal()
                      : 2.0 + 0.25 * rng.Normal();
    }
  }
  Tensor logit_t = flow->prior_logits(), mean_t = flow->prior_means(),
         log_scale_t = flow->prior_log_scales();  // handles to the parameters
  double* logits = logit_t.mutable_data<double>();
  double* means = mean_t.mutable_data<double>();
  double* log_scales = log_scale_t.mutable_data<double>();
  for (int64_t i = 0; i < logit_t.numel(); ++i) {
    logits[i] = 0.25 * rng.Normal();
    means[i] = ((i % kc) * mu0_step + 16.0 * rng.Normal()) / kIdfMeanUnit;
    log_scales[i] = (2.0 + 0.25 * rng.Normal()) / kIdfLogScaleUnit;
  }
  return flow;
}

// MNIST-like images: mostly 0, some 255, the rest uniform; image 0 all 0,
// image 1 all 255.
IdfImages GoldenIdfImages(uint64_t seed) {
  Rng rng(seed);
  IdfImages im;
  im.count = 16;
  im.height = 8;
  im.width = 8;
  const int64_t d = im.height * im.width;
  for (int64_t n = 0; n < im.count; ++n) {
    for (int64_t i = 0; i < d; ++i) {
      const double u = rng.Uniform();
      const int64_t v = u < 0.5 ? 0 : u < 0.65 ? 255 : rng.UniformInt(256);
      im.pixels.push_back(static_cast<uint8_t>(n == 0 ? 0 : n == 1 ? 255 : v));
    }
  }
  return im;
}

// Golden values: model id (CRC-32 of the parameters: pins the model built
// above), container length and CRC-32, escapes.
constexpr uint32_t kIdfModelId = 0xC69E32B8;
constexpr size_t kIdfBytes = 1920;
constexpr uint32_t kIdfCrc = 0x036D65B0;
constexpr int64_t kIdfEscapes = 105;

TEST(CodecGoldenTest, IdfContainerBytesAreTheCheckedInOnes) {
  std::shared_ptr<IntegerDiscreteFlow> flow = GoldenIdf(20261207);
  absl::StatusOr<IdfCodec> codec = IdfCodec::Create(*flow);
  ASSERT_TRUE(codec.ok()) << codec.status();
  const IdfImages images = GoldenIdfImages(7);
  IdfCodeStats stats;
  absl::StatusOr<std::string> bytes = codec->Compress(images, &stats);
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  EXPECT_EQ(codec->model_id(), kIdfModelId)
      << "the model built from the seed changed (Rng or IdfOptions)";
  EXPECT_EQ(stats.escapes, kIdfEscapes);
  EXPECT_EQ(bytes->size(), kIdfBytes);
  EXPECT_EQ(BodyCrc(bytes->data(), bytes->size()), kIdfCrc)
      << "the IDF container bytes changed: a format or arithmetic change "
         "that breaks old files";

  absl::StatusOr<IdfImages> back = codec->Decompress(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->count, images.count);
  EXPECT_EQ(back->height, images.height);
  EXPECT_EQ(back->width, images.width);
  EXPECT_EQ(back->pixels, images.pixels);
}

// The float64 values before quantisation, pinned bit for bit: a single
// changed rounding (a fused multiply-add, a reordered sum, a libm call) shows
// here, while the integer tables and bytes above usually absorb it. Inputs
// are built from bit patterns (exact). The masses are the golden model's
// final-prior tables as IdfCodec builds them (idf_codec.h: weights
// DetExp(l - max l), means 32 m - kIdfLow, scales DetExp(4 g)).
constexpr uint32_t kDetMathCrc = 0x40DD0D5D;
constexpr uint32_t kFinalPriorMassesCrc = 0x76BD7307;

TEST(CodecGoldenTest, ArithmeticFeedingTheCoderIsBitStable) {
  Rng rng(41);
  std::vector<double> out;
  for (int i = 0; i < 4000; ++i) {
    const double e = RandomWithExponent(rng, 9) - 768.0;  // [-256, 256), exact
    const double x =
        RandomWithExponent(rng, static_cast<int>(rng.UniformInt(2046)) - 1022);
    const double y =
        RandomWithExponent(rng, static_cast<int>(rng.UniformInt(80)) - 60);
    const double t =
        RandomWithExponent(rng, static_cast<int>(rng.UniformInt(12)) - 6);
    out.push_back(DetExp(e));
    out.push_back(DetLog(x));
    out.push_back(DetLog1p(y));
    out.push_back(DetSigmoid(rng.Bits64() >> 63 ? t : -t));
  }
  EXPECT_EQ(BitsCrc(out), kDetMathCrc) << "deterministic_math changed";

  std::shared_ptr<IntegerDiscreteFlow> flow = GoldenIdf(20261207);
  const int kc = flow->options().components;
  const std::vector<double> l = flow->prior_logits().ToVector();
  const std::vector<double> m = flow->prior_means().ToVector();
  const std::vector<double> g = flow->prior_log_scales().ToVector();
  std::vector<double> masses;
  for (size_t i = 0; i < l.size(); i += kc) {
    double top = l[i];
    for (int c = 1; c < kc; ++c) top = std::max(top, l[i + c]);
    std::vector<LogisticComponent> comps(kc);
    for (int c = 0; c < kc; ++c) {
      comps[c].weight = DetExp(l[i + c] - top);
      comps[c].mean = m[i + c] * kIdfMeanUnit - kIdfLow;
      comps[c].scale = DetExp(g[i + c] * kIdfLogScaleUnit);
    }
    absl::StatusOr<std::vector<double>> pmf =
        DiscretizedLogisticMixturePmf(comps, kIdfSymbols);
    ASSERT_TRUE(pmf.ok()) << pmf.status();
    masses.insert(masses.end(), pmf->begin(), pmf->end());
  }
  EXPECT_EQ(BitsCrc(masses), kFinalPriorMassesCrc)
      << "the masses of the logistic mixture tables changed";
}

// ---- Lossy ----

constexpr int64_t kLossyD = 36;  // 1 x 6 x 6

// A random permutation of the 36 pixels, identity pixel map; prior means
// 128 + N(0, 32^2), scales 4 + 32 U, step scales 1/2 + U (U uniform [0, 1)).
LossyModel GoldenLossyModel(uint64_t seed) {
  Rng rng(seed);
  LossyModel m;
  m.flow = flows::RandomPermutation(kLossyD, rng).value();
  m.image = Shape{1, 6, 6};
  m.event = Shape{kLossyD};
  m.pixel_map = PixelMap::kIdentity;
  for (int64_t j = 0; j < kLossyD; ++j) {
    m.prior.mean.push_back(128.0 + 32.0 * rng.Normal());
    m.prior.scale.push_back(4.0 + 32.0 * rng.Uniform());
    m.step_scale.push_back(0.5 + rng.Uniform());
  }
  return m;
}

Tensor GoldenLossyImages(uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(16 * kLossyD);
  for (double& p : v) p = static_cast<double>(rng.UniformInt(256));
  return Tensor::FromVector(Shape{16, 1, 6, 6}, v);
}

struct LossyGolden {
  double delta;
  size_t bytes;
  uint32_t crc;
};
constexpr LossyGolden kLossyGolden[] = {
    {0.5, 892, 0xD71A0799},
    {4.0, 696, 0x4EDD521D},
    {24.0, 520, 0x03DA3AC2},
};

TEST(CodecGoldenTest, LossyContainerBytesAreTheCheckedInOnes) {
  const LossyModel model = GoldenLossyModel(31);
  const Tensor x = GoldenLossyImages(32);
  for (const LossyGolden& golden : kLossyGolden) {
    SCOPED_TRACE(golden.delta);
    absl::StatusOr<LossyCodec> codec = LossyCodec::Create(model, golden.delta);
    ASSERT_TRUE(codec.ok()) << codec.status();
    absl::StatusOr<std::vector<uint8_t>> bytes = codec->Encode(x);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(bytes->size(), golden.bytes);
    EXPECT_EQ(BodyCrc(bytes->data(), bytes->size()), golden.crc)
        << "the lossy container bytes changed: a format or arithmetic change "
           "that breaks old files";

    // The decoder's symbols are the encoder's, and with a permutation flow
    // x_hat is the permuted z_hat, clamped, exactly.
    absl::StatusOr<LossyCodec::Decoded> got = codec->Decode(*bytes);
    ASSERT_TRUE(got.ok()) << got.status();
    absl::StatusOr<Tensor> z = Latents(model, x);
    ASSERT_TRUE(z.ok()) << z.status();
    absl::StatusOr<std::vector<int32_t>> symbols = codec->Quantize(*z);
    ASSERT_TRUE(symbols.ok()) << symbols.status();
    EXPECT_EQ(got->symbols, *symbols);
    const std::vector<double> z_hat = got->z_hat.ToVector();
    const std::vector<double> direct = codec->Dequantize(*symbols).ToVector();
    const std::vector<double> x_hat = got->pixels.ToVector();
    const std::vector<int64_t>& perm =
        static_cast<const flows::Permute&>(*model.flow).perm();
    ASSERT_EQ(z_hat.size(), direct.size());
    ASSERT_EQ(x_hat.size(), z_hat.size());
    for (size_t i = 0; i < z_hat.size(); ++i) {
      ASSERT_EQ(z_hat[i], direct[i]) << i;
      // z[:, j] = x[:, perm[j]], so x_hat[:, perm[j]] = clamp(z_hat[:, j]).
      const size_t n = i / kLossyD, j = i % kLossyD;
      ASSERT_EQ(x_hat[n * kLossyD + perm[j]], std::clamp(z_hat[i], 0.0, 255.0))
          << i;
    }
  }
}

}  // namespace
}  // namespace flowtape::compression
