// PNG round trips through libpng (header, size and every pixel), bad files,
// and the geometry of the plots: where a density peak and a scatter point
// land, grid layout, histogram bars.
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "autodiff/ops.h"
#include "viz/plots.h"
#include "viz/png.h"
#include "gtest/gtest.h"

namespace flowtape::viz {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

bool Same(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

TEST(Png, WritesAValidFileAndReadsEveryPixelBack) {
  Image im(37, 21);
  for (int y = 0; y < 21; ++y)
    for (int x = 0; x < 37; ++x)
      im.set(x, y,
             {static_cast<uint8_t>(7 * x), static_cast<uint8_t>(11 * y),
              static_cast<uint8_t>(x ^ y)});
  ASSERT_TRUE(WritePng(Tmp("a.png"), im).ok());
  // The file starts with the PNG signature and an IHDR of 37 x 21, RGB 8-bit.
  std::ifstream f(Tmp("a.png"), std::ios::binary);
  std::string head(26, '\0');
  f.read(&head[0], 26);
  EXPECT_EQ(head.substr(0, 8), "\x89PNG\r\n\x1a\n");
  EXPECT_EQ(head.substr(12, 4), "IHDR");
  EXPECT_EQ(static_cast<unsigned char>(head[19]), 37);
  EXPECT_EQ(static_cast<unsigned char>(head[23]), 21);
  EXPECT_EQ(head[24], 8);  // bit depth
  EXPECT_EQ(head[25], 2);  // colour type RGB
  Image back = ReadPng(Tmp("a.png")).value();
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 21);
  EXPECT_EQ(back.rgb, im.rgb);
}

TEST(Png, BadFilesGiveAClearStatus) {
  EXPECT_EQ(ReadPng(Tmp("missing.png")).status().code(),
            absl::StatusCode::kNotFound);
  std::ofstream(Tmp("text.png")) << "hello, not a png";
  auto r = ReadPng(Tmp("text.png"));
  EXPECT_NE(r.status().message().find("bad signature"), std::string::npos);
  // A valid PNG cut in half.
  ASSERT_TRUE(WritePng(Tmp("full.png"), Image(64, 64, {1, 2, 3})).ok());
  std::ifstream in(Tmp("full.png"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(Tmp("cut.png"), std::ios::binary)
      << bytes.substr(0, bytes.size() / 2);
  EXPECT_EQ(ReadPng(Tmp("cut.png")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(WritePng("/nonexistent_dir/x.png", Image(2, 2)).ok());
}

TEST(Plots, HeatmapPeaksWhereTheDensityPeaks) {
  // Gaussian bump at (1, 2) on [-4, 4]^2 with 80 pixels of width 0.1: the
  // four pixels centred at (1 +- 0.05, 2 +- 0.05) share the maximum.
  auto log_prob = [](const Tensor& p) {
    Tensor d = p - Tensor::FromVector(Shape{2}, {1.0, 2.0});
    return -0.5 * Sum(Square(d), 1);
  };
  Image im = DensityHeatmap(log_prob, Box{}, 80);
  EXPECT_TRUE(Same(im.at(50, 20), Viridis(1.0)));
  EXPECT_TRUE(Same(im.at(49, 19), Viridis(1.0)));
  // Column 60 is centred at x = 2.05: exp(-(1.05^2 - 0.05^2) / 2) of the top.
  EXPECT_TRUE(Same(im.at(60, 20), Viridis(std::exp(-0.5 * 1.1))));
  EXPECT_TRUE(Same(im.at(0, 79), Viridis(0.0)));
  EXPECT_TRUE(Same(Viridis(1.0), Rgb{253, 231, 37}));
}

TEST(Plots, ScatterInksThePointsPixel) {
  Tensor pts = Tensor::FromVector(Shape{3, 2}, {0.05, 0.05, 0.05, 0.05, 9, 9});
  Image im = ScatterPlot(pts, Box{}, 80, {0, 0, 0}, 0.5);
  EXPECT_TRUE(Same(im.at(40, 39), Rgb{64, 64, 64}));  // 255 * 0.5 * 0.5
  EXPECT_TRUE(Same(im.at(10, 10), Rgb{255, 255, 255}));
}

TEST(Plots, ScatterSkipsNonFiniteAndFarAwayPoints) {
  // floor(NaN or 1e30) cast to int is undefined: such points are skipped.
  Tensor pts =
      Tensor::FromVector(Shape{6, 2}, {NAN, 0.0, 0.0, NAN, 1e30, 0.0, 0.0,
                                       -1e30, INFINITY, -INFINITY, 0.05, 0.05});
  Image im = ScatterPlot(pts, Box{}, 80, {0, 0, 0}, 0.5);
  int inked = 0;
  for (int row = 0; row < 80; ++row)
    for (int col = 0; col < 80; ++col)
      inked += !Same(im.at(col, row), Rgb{255, 255, 255});
  EXPECT_EQ(inked, 1);
  EXPECT_TRUE(Same(im.at(40, 39), Rgb{128, 128, 128}));
}

TEST(Plots, ImageGridLaysOutRowsAndColumns) {
  Tensor imgs = Tensor::Zeros(Shape{5, 1, 2, 3});
  imgs.mutable_data()[4 * 6 + 5] = 1.0;  // image 4, pixel (x 2, y 1)
  Image g = ImageGrid(imgs, 3, 1, 2);
  EXPECT_EQ(g.width, 3 * (3 * 2 + 1) + 1);
  EXPECT_EQ(g.height, 2 * (2 * 2 + 1) + 1);
  // Image 4 is in row 1, column 1: origin (1 + 7, 1 + 5).
  EXPECT_TRUE(Same(g.at(8 + 4, 6 + 2), Rgb{255, 255, 255}));
  EXPECT_TRUE(Same(g.at(8 + 5, 6 + 3), Rgb{255, 255, 255}));
  EXPECT_TRUE(Same(g.at(8, 6), Rgb{0, 0, 0}));
}

TEST(Plots, HistogramDrawsTallerBarsForCommonValues) {
  std::vector<double> s(100, 0.0);
  for (int i = 0; i < 25; ++i) s[i] = 1.0;
  Image h = Histogram({s}, 2, 120, 100);
  // Bin 0 holds 75%, bin 1 25%: bar tops at 10 and 90 - 80/3.
  const Rgb blank{255, 255, 255};
  EXPECT_FALSE(Same(h.at(20, 11), blank));
  EXPECT_TRUE(Same(h.at(100, 40), blank));
  EXPECT_FALSE(Same(h.at(100, 70), blank));
  EXPECT_TRUE(Same(h.at(5, 90), blank));
  // Ticks below the baseline at the integers 0 and 1 (the range ends).
  EXPECT_TRUE(Same(h.at(10, 93), Rgb{0, 0, 0}));
  EXPECT_TRUE(Same(h.at(110, 93), Rgb{0, 0, 0}));
  EXPECT_TRUE(Same(h.at(60, 93), blank));
  // A given range drops values outside it: only the 1s fall in [0.5, 2], all
  // in bin 0 = [0.5, 1.25), which is the (full-height) peak; bin 1 is empty.
  Image r = Histogram({s}, 2, 120, 100, 0.5, 2.0);
  EXPECT_FALSE(Same(r.at(20, 11), blank));
  EXPECT_TRUE(Same(r.at(80, 89), blank));
}

TEST(Plots, HistogramOfHugeValuesEnds) {
  // Diverged log-likelihoods: beyond 2^53, t += 1 no longer moves a tick.
  const Rgb blank{255, 255, 255};
  Image h = Histogram({{-1e17, -1e17 + 64, -1e17 + 64}}, 2, 120, 100);
  EXPECT_FALSE(Same(h.at(20, 80), blank));   // bin 0: 1/3
  EXPECT_FALSE(Same(h.at(100, 11), blank));  // bin 1: 2/3, the peak
  // 65 integers fit 100 pixels: ticks are drawn, the first at the left end.
  EXPECT_TRUE(Same(h.at(10, 93), Rgb{0, 0, 0}));
  // 2e9 integers do not: no ticks, one bar per end.
  Image w = Histogram({{-1e9, 1e9}}, 2, 120, 100);
  EXPECT_TRUE(Same(w.at(60, 93), blank));
  EXPECT_FALSE(Same(w.at(20, 11), blank));
  // An infinite range is an empty plot.
  Image e = Histogram({{0.0, 1.0}}, 2, 120, 100, -INFINITY, 1.0);
  EXPECT_TRUE(Same(e.at(20, 50), blank));
  // No value in the range (peak 0, bar heights 0 / 0): no bars, only the
  // baseline and its ticks.
  Image none = Histogram({{5.0, NAN}}, 2, 120, 100, 0.0, 1.0);
  EXPECT_TRUE(Same(none.at(20, 89), blank));
  EXPECT_TRUE(Same(none.at(20, 90), Rgb{0, 0, 0}));
}

}  // namespace
}  // namespace flowtape::viz
