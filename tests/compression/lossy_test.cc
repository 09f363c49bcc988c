#include "compression/lossy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "flows/householder.h"
#include "flows/scaling.h"
#include "gtest/gtest.h"

namespace flowtape::compression {
namespace {

constexpr int kPrecision = 20;

// Integer images [n, 1, 4, 4] with levels in lo..hi.
Tensor Images(int64_t n, int lo, int hi, Rng& rng) {
  std::vector<double> v(n * 16);
  for (double& p : v) p = static_cast<double>(lo + rng.UniformInt(hi - lo + 1));
  return Tensor::FromVector(Shape{n, 1, 4, 4}, v);
}

// An orthogonal flow (16 reflections of R^16) on 4 x 4 images with the
// prior fitted to latents of training images.
LossyModel OrthogonalModel(PixelMap map) {
  Rng rng(7);
  auto flow = flows::Householder::Create(16, 16, rng);
  EXPECT_TRUE(flow.ok()) << flow.status();
  LossyModel m;
  m.flow = *flow;
  m.image = Shape{1, 4, 4};
  m.event = Shape{16};
  m.pixel_map = map;
  m.prior.mean.assign(16, 0.0);
  m.prior.scale.assign(16, 1.0);
  absl::StatusOr<Tensor> z = Latents(m, Images(200, 0, 255, rng));
  EXPECT_TRUE(z.ok()) << z.status();
  absl::StatusOr<LatentPrior> prior = FitLatentPrior(*z);
  EXPECT_TRUE(prior.ok()) << prior.status();
  m.prior = *prior;
  return m;
}

LossyCodec MakeCodec(const LossyModel& m, double delta) {
  absl::StatusOr<LossyCodec> c = LossyCodec::Create(m, delta, kPrecision);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

// The direct computation: symbols, z_hat and x_hat without the coder.
struct Direct {
  Tensor z;
  std::vector<int32_t> symbols;
  Tensor z_hat, x_hat;
};
Direct Compute(const LossyCodec& codec, const Tensor& pixels) {
  Direct d;
  d.z = *Latents(codec.model(), pixels);
  d.symbols = *codec.Quantize(d.z);
  d.z_hat = codec.Dequantize(d.symbols);
  d.x_hat = *codec.Reconstruct(d.z_hat);
  return d;
}

bool BitwiseEqual(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<double> x = a.ToVector(), y = b.ToVector();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0;
}

TEST(LossyCodec, RoundTripReproducesTheDirectComputation) {
  for (PixelMap map : {PixelMap::kIdentity, PixelMap::kLogit}) {
    const LossyModel m = OrthogonalModel(map);
    Rng rng(1);
    // More than kLossyChunk images: the flow passes run in chunks.
    const Tensor x = Images(kLossyChunk + 44, 0, 255, rng);
    for (double delta : {0.05, 0.5, 4.0, 40.0}) {
      SCOPED_TRACE(delta);
      const LossyCodec codec = MakeCodec(m, delta);
      const Direct direct = Compute(codec, x);
      absl::StatusOr<std::vector<uint8_t>> bytes = codec.Encode(x);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      absl::StatusOr<LossyCodec::Decoded> got = codec.Decode(*bytes);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->symbols, direct.symbols);
      EXPECT_TRUE(BitwiseEqual(got->z_hat, direct.z_hat));
      EXPECT_TRUE(BitwiseEqual(got->pixels, direct.x_hat));
      // z_hat is Delta round(z / Delta) (no latent is far enough out to be
      // clamped).
      for (int64_t i = 0; i < direct.z.numel(); ++i) {
        ASSERT_EQ(direct.z_hat[i], delta * std::round(direct.z[i] / delta));
      }
      // A second codec built from the same model decodes it too.
      absl::StatusOr<LossyCodec::Decoded> again =
          MakeCodec(m, delta).Decode(*bytes);
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_EQ(again->symbols, direct.symbols);
    }
  }
}

TEST(LossyCodec, PerLatentStepsRoundTrip) {
  LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(9);
  for (int j = 0; j < 16; ++j) m.step_scale.push_back(0.5 + rng.Uniform());
  const Tensor x = Images(20, 0, 255, rng);
  const LossyCodec codec = MakeCodec(m, 2.0);
  const Direct direct = Compute(codec, x);
  const LossyCodec::Decoded got = *codec.Decode(*codec.Encode(x));
  EXPECT_EQ(got.symbols, direct.symbols);
  EXPECT_TRUE(BitwiseEqual(got.pixels, direct.x_hat));
  for (int64_t i = 0; i < direct.z.numel(); ++i) {
    const double step = 2.0 * m.step_scale[i % 16];
    ASSERT_EQ(codec.step(i % 16), step);
    ASSERT_EQ(direct.z_hat[i], step * std::round(direct.z[i] / step));
  }
  // Other step scales: another codec.
  LossyModel other = m;
  other.step_scale[3] *= 1.01;
  EXPECT_EQ(MakeCodec(other, 2.0).Decode(*codec.Encode(x)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A diagonal flow z = x exp(s) has decoder Jacobian columns |J_d| =
// exp(-s_d), so the steps are w_d = exp(s_d - mean s) exactly (Rademacher
// probes square to 1 on a diagonal Jacobian).
TEST(LossyCodec, StepScalesOfADiagonalFlowFollowItsScales) {
  auto flow = flows::Scaling::Create(Shape{16});
  ASSERT_TRUE(flow.ok()) << flow.status();
  Tensor s = (*flow)->log_scale();
  double mean = 0;
  for (int j = 0; j < 16; ++j) {
    s.mutable_data<double>()[j] = 0.15 * (j - 5);
    mean += 0.15 * (j - 5) / 16;
  }
  LossyModel m;
  m.flow = *flow;
  m.image = Shape{1, 4, 4};
  m.event = Shape{16};
  m.pixel_map = PixelMap::kIdentity;
  Rng rng(10);
  absl::StatusOr<std::vector<double>> w =
      SensitivityStepScales(m, Images(5, 0, 255, rng), 2, rng);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int j = 0; j < 16; ++j) {
    EXPECT_NEAR((*w)[j], std::exp(0.15 * (j - 5) - mean), 1e-12) << j;
  }
  EXPECT_FALSE(SensitivityStepScales(m, Images(5, 0, 255, rng), 0, rng).ok());
}

TEST(LossyCodec, StreamLengthIsTheIdealCodeLengthPlusTheRansOverhead) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(2);
  const Tensor x = Images(50, 0, 255, rng);
  for (double delta : {0.1, 1.0, 8.0, 64.0}) {
    SCOPED_TRACE(delta);
    const LossyCodec codec = MakeCodec(m, delta);
    const Direct direct = Compute(codec, x);
    const double ideal = codec.IdealBits(direct.symbols);
    const std::vector<uint8_t> bytes = *codec.Encode(x);
    const double stream_bits = 8.0 * (bytes.size() - kLossyHeaderBytes - 4);
    const double n = static_cast<double>(direct.symbols.size());
    // rans.h's bounds for n symbols at precision p.
    const double per = std::log2(1 + std::ldexp(1.0, kPrecision - 31));
    EXPECT_LE(stream_bits, ideal + 64 + n * per);
    EXPECT_GE(stream_bits, ideal + 32 - 2 * n * per);
    // The ideal is the prior's -log2 mass of each symbol's bin.
    EXPECT_GT(ideal, 0.0);
  }
}

TEST(LossyCodec, OrthogonalFlowDistortionIsBoundedByTheQuantisation) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(3);
  // Pixels away from 0 and 255: for small Delta no clamp is active and the
  // pixel error equals the latent error (an isometry).
  const Tensor x = Images(40, 60, 190, rng);
  for (double delta : {0.25, 1.0, 4.0, 16.0, 64.0}) {
    SCOPED_TRACE(delta);
    const LossyCodec codec = MakeCodec(m, delta);
    const Direct direct = Compute(codec, x);
    const Distortion pixel = MeasureDistortion(x, direct.x_hat, 256);
    const Distortion latent = MeasureDistortion(direct.z, direct.z_hat, 256);
    EXPECT_LE(latent.mse, delta * delta / 4 * (1 + 1e-12));
    EXPECT_LE(pixel.mse, latent.mse * (1 + 1e-9) + 1e-18);
    if (delta <= 4.0) {
      EXPECT_NEAR(pixel.mse, latent.mse, 1e-9 * latent.mse);
    }
  }
}

TEST(LossyCodec, PsnrFallsAndRateFallsAsDeltaGrows) {
  const LossyModel m = OrthogonalModel(PixelMap::kLogit);
  Rng rng(4);
  const Tensor x = Images(60, 0, 255, rng);
  double last_psnr = INFINITY, last_bytes = INFINITY;
  for (double delta : {0.01, 0.03, 0.1, 0.3, 1.0}) {
    SCOPED_TRACE(delta);
    const LossyCodec codec = MakeCodec(m, delta);
    const LossyCodec::Decoded d = *codec.Decode(*codec.Encode(x));
    const double psnr = MeasureDistortion(x, d.pixels, 256).psnr;
    const double bytes = static_cast<double>(codec.Encode(x)->size());
    EXPECT_LT(psnr, last_psnr);
    EXPECT_LT(bytes, last_bytes);
    last_psnr = psnr;
    last_bytes = bytes;
  }
}

TEST(LossyCodec, EveryTruncationAndByteCorruptionIsAStatus) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(5);
  const LossyCodec codec = MakeCodec(m, 2.0);
  const std::vector<uint8_t> bytes = *codec.Encode(Images(6, 0, 255, rng));
  for (size_t len = 0; len < bytes.size(); ++len) {
    absl::StatusOr<LossyCodec::Decoded> d =
        codec.Decode(absl::MakeConstSpan(bytes.data(), len));
    ASSERT_FALSE(d.ok()) << "truncated to " << len;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << len;
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= static_cast<uint8_t>(1 + (i % 255));
    ASSERT_FALSE(codec.Decode(bad).ok()) << "byte " << i;
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(codec.Decode(longer).ok());
}

TEST(LossyCodec, ContainersOfAnotherCodecAreRefused) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(6);
  const Tensor x = Images(3, 0, 255, rng);
  const std::vector<uint8_t> bytes = *MakeCodec(m, 2.0).Encode(x);
  absl::StatusOr<LossyCodec::Decoded> d = MakeCodec(m, 3.0).Decode(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
  LossyModel other = m;
  other.prior.scale[5] *= 1.5;
  d = MakeCodec(other, 2.0).Decode(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LossyCodec, ChecksummedButForgedHeadersNeverAllocateOrCrash) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  Rng rng(8);
  const LossyCodec codec = MakeCodec(m, 2.0);
  std::vector<uint8_t> bytes = *codec.Encode(Images(2, 0, 255, rng));
  auto reseal = [](std::vector<uint8_t>& b) {
    // Recompute the trailing CRC the way a forger would.
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i + 4 < b.size(); ++i) {
      crc ^= b[i];
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    crc ^= 0xffffffffu;
    for (int k = 0; k < 4; ++k) b[b.size() - 4 + k] = crc >> (8 * k);
  };
  for (uint32_t count : {0u, 3u, 0xffffffffu}) {
    std::vector<uint8_t> forged = bytes;
    for (int k = 0; k < 4; ++k) forged[24 + k] = count >> (8 * k);
    reseal(forged);
    EXPECT_EQ(codec.Decode(forged).status().code(), absl::StatusCode::kDataLoss)
        << count;
  }
  std::vector<uint8_t> garbage = bytes;
  for (size_t i = kLossyHeaderBytes; i + 4 < garbage.size(); ++i) {
    garbage[i] = static_cast<uint8_t>(rng.UniformInt(256));
  }
  reseal(garbage);
  EXPECT_FALSE(codec.Decode(garbage).ok());
}

TEST(LossyCodec, BadInputIsInvalidArgument) {
  const LossyModel m = OrthogonalModel(PixelMap::kIdentity);
  const LossyCodec codec = MakeCodec(m, 1.0);
  Tensor half = Tensor::Full(Shape{1, 1, 4, 4}, 0.5);
  EXPECT_EQ(codec.Encode(half).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec.Encode(Tensor::Full(Shape{1, 1, 4, 4}, 256)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(codec.Encode(Tensor::Zeros(Shape{1, 1, 4, 5})).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (double delta : {0.0, -1.0, double{NAN}, double{INFINITY}, 1e-9}) {
    EXPECT_EQ(LossyCodec::Create(m, delta).status().code(),
              absl::StatusCode::kInvalidArgument)
        << delta;
  }
  LossyModel bad = m;
  bad.prior.scale[0] = 0;
  EXPECT_FALSE(LossyCodec::Create(bad, 1.0).ok());
  bad = m;
  bad.prior.mean.pop_back();
  EXPECT_FALSE(LossyCodec::Create(bad, 1.0).ok());
}

}  // namespace
}  // namespace flowtape::compression
