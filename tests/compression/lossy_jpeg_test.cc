#include "compression/lossy_jpeg.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace flowtape::compression {
namespace {

// A smooth synthetic image (gradient plus a bright disc), sides not
// multiples of 8 so edge blocks are padded.
GrayImage Synthetic(int h = 29, int w = 37) {
  GrayImage g{h, w, std::vector<uint8_t>(h * w)};
  for (int r = 0; r < h; ++r) {
    for (int c = 0; c < w; ++c) {
      const double disc = std::hypot(r - h / 2.0, c - w / 2.0) < 8 ? 90 : 0;
      g.pixels[r * w + c] = static_cast<uint8_t>(20 + 3 * r + 2 * c + disc);
    }
  }
  return g;
}

double Psnr(const GrayImage& a, const GrayImage& b) {
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const double e = static_cast<double>(a.pixels[i]) - b.pixels[i];
    sum += e * e;
  }
  const double mse = sum / a.pixels.size();
  return mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
}

TEST(Jpeg, RoundTripIsCloseAndSizeGrowsWithQuality) {
  const GrayImage image = Synthetic();
  size_t last_size = 0;
  double last_psnr = 0;
  for (int q : {5, 25, 50, 75, 95, 100}) {
    SCOPED_TRACE(q);
    absl::StatusOr<std::vector<uint8_t>> file = EncodeJpeg(image, q);
    ASSERT_TRUE(file.ok()) << file.status();
    absl::StatusOr<GrayImage> back = DecodeJpeg(*file);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(back->height, image.height);
    ASSERT_EQ(back->width, image.width);
    const double psnr = Psnr(image, *back);
    EXPECT_GT(file->size(), last_size);
    EXPECT_GT(psnr, last_psnr);
    if (q >= 95) {
      EXPECT_GT(psnr, 40.0);
    }
    last_size = file->size();
    last_psnr = psnr;
  }
}

TEST(Jpeg, SharedTablesDecodeToTheSamePixelsAsAFile) {
  const GrayImage image = Synthetic();
  for (int q : {10, 60, 90}) {
    SCOPED_TRACE(q);
    const std::vector<uint8_t> tables = *JpegTables(q);
    const std::vector<uint8_t> abbreviated = *EncodeJpegAbbreviated(image, q);
    const std::vector<uint8_t> file = *EncodeJpeg(image, q);
    absl::StatusOr<GrayImage> a = DecodeJpegAbbreviated(tables, abbreviated);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->pixels, DecodeJpeg(file)->pixels);
    // At least a quantisation table (69 bytes) and the Huffman tables less.
    EXPECT_LT(abbreviated.size() + 100, file.size());
    // Without its tables the abbreviated stream does not decode, and the
    // tables stream is not an image.
    EXPECT_EQ(DecodeJpeg(abbreviated).status().code(),
              absl::StatusCode::kDataLoss);
    EXPECT_EQ(DecodeJpegAbbreviated(tables, tables).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(Jpeg, ScanBytesAreTheStreamLessItsMarkers) {
  const GrayImage image = Synthetic();
  for (int q : {10, 90}) {
    const std::vector<uint8_t> a = *EncodeJpegAbbreviated(image, q);
    // SOI 2, SOF0 2 + 11, SOS 2 + 8, EOI 2.
    EXPECT_EQ(*JpegScanBytes(a), a.size() - 27);
    const std::vector<uint8_t> file = *EncodeJpeg(image, q, false);
    EXPECT_EQ(*JpegScanBytes(file), *JpegScanBytes(a));
  }
  const std::vector<uint8_t> a = *EncodeJpegAbbreviated(image, 50);
  for (size_t len = 0; len < a.size(); ++len) {
    EXPECT_FALSE(JpegScanBytes(absl::MakeConstSpan(a.data(), len)).ok());
  }
  EXPECT_FALSE(JpegScanBytes(*JpegTables(50)).ok());
}

TEST(Jpeg, EveryTruncationIsDataLoss) {
  const GrayImage image = Synthetic();
  const std::vector<uint8_t> file = *EncodeJpeg(image, 80);
  for (size_t len = 0; len < file.size(); ++len) {
    absl::StatusOr<GrayImage> d =
        DecodeJpeg(absl::MakeConstSpan(file.data(), len));
    ASSERT_FALSE(d.ok()) << "truncated to " << len;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << len;
  }
  const std::vector<uint8_t> tables = *JpegTables(80);
  const std::vector<uint8_t> abbreviated = *EncodeJpegAbbreviated(image, 80);
  for (size_t len = 0; len < abbreviated.size(); ++len) {
    ASSERT_FALSE(DecodeJpegAbbreviated(
                     tables, absl::MakeConstSpan(abbreviated.data(), len))
                     .ok())
        << "truncated to " << len;
  }
}

TEST(Jpeg, BadArgumentsAreInvalidArgument) {
  const GrayImage image = Synthetic();
  for (int q : {0, 101, -5}) {
    EXPECT_EQ(EncodeJpeg(image, q).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(JpegTables(q).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  GrayImage wrong = image;
  wrong.pixels.pop_back();
  EXPECT_EQ(EncodeJpeg(wrong, 50).status().code(),
            absl::StatusCode::kInvalidArgument);
  GrayImage empty;
  EXPECT_EQ(EncodeJpegAbbreviated(empty, 50).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::compression
