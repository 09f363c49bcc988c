// PNG round trips through libpng (header, size and every pixel) and bad
// files.
#include <cstdlib>
#include <fstream>

#include "viz/png.h"
#include "gtest/gtest.h"

namespace flowtape::viz {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

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

}  // namespace
}  // namespace flowtape::viz
