// ReadPng on hostile headers: dimensions beyond the documented limits, or more
// pixel data than the file's size can encode, are refused before any pixel
// buffer is allocated (a 65-byte file declaring 10^6 x 10^6 pixels used to
// abort with std::bad_alloc); non-regular files are refused without blocking;
// open failures keep errno's code and text.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "viz/png.h"

namespace flowtape::viz {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

void Be32(std::string& s, uint32_t v) {
  for (int k = 24; k >= 0; k -= 8) s.push_back(static_cast<char>(v >> k));
}

std::string Chunk(const std::string& type, const std::string& data) {
  std::string c;
  Be32(c, data.size());
  c += type + data;
  const std::string body = type + data;
  Be32(c, crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size()));
  return c;
}

// Signature, IHDR (8-bit RGB, or `colour` type), an IDAT holding one
// compressed row of zeros, IEND: 8 + 25 + 12 + |idat| + 12 bytes.
std::string PngWithHeader(uint32_t w, uint32_t h, int colour = 2) {
  std::string ihdr;
  Be32(ihdr, w);
  Be32(ihdr, h);
  ihdr += std::string{8, static_cast<char>(colour), 0, 0, 0};
  const std::string row(4, '\0');
  uLongf n = compressBound(row.size());
  std::string z(n, '\0');
  compress(reinterpret_cast<Bytef*>(&z[0]), &n,
           reinterpret_cast<const Bytef*>(row.data()), row.size());
  z.resize(n);
  return std::string("\x89PNG\r\n\x1a\n", 8) + Chunk("IHDR", ihdr) +
         Chunk("IDAT", z) + Chunk("IEND", "");
}

std::string Write(const std::string& name, const std::string& bytes) {
  std::ofstream(Tmp(name), std::ios::binary) << bytes;
  return Tmp(name);
}

void ExpectRefused(const std::string& path, const std::string& needle) {
  auto r = ReadPng(path);
  ASSERT_FALSE(r.ok()) << path;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
}

TEST(PngLimits, MillionByMillionHeaderIsAnErrorNotAnAbort) {
  const std::string bytes = PngWithHeader(1000000, 1000000);
  EXPECT_LT(bytes.size(), 70u);
  ExpectRefused(Write("huge.png", bytes),
                "1000000 x 1000000 pixels, above the limit of 16384 pixels "
                "per side");
}

TEST(PngLimits, OversizedHeaderIsRefusedBeforeAllocating) {
  // 20000 x 20000 RGB would be 1.2 GB of pixels: over the side limit.
  ExpectRefused(Write("big.png", PngWithHeader(20000, 20000)),
                "20000 x 20000 pixels, above the limit");
  // Within the side limit, over the pixel-count limit (2^26).
  ExpectRefused(Write("wide.png", PngWithHeader(16384, 16384)),
                "268435456 pixels, above the limit of 67108864");
}

TEST(PngLimits, HeaderNeedingMoreDataThanTheFileCanHoldIsTruncated) {
  // 4000 x 4000 8-bit RGB = 48 MB of pixel data; deflate compresses at most
  // 1032:1, so a 65-byte file cannot hold it.
  ExpectRefused(Write("short.png", PngWithHeader(4000, 4000)),
                "4000 x 4000 pixels need at least 46511 compressed bytes");
  // Greyscale 1-bit: 2^13 x 2^13 pixels = 8 MiB of bits, still too many.
  ExpectRefused(Write("grey.png", PngWithHeader(8192, 8192, 0)),
                "need at least");
}

TEST(PngLimits, NonRegularFilesAreRefused) {
  ExpectRefused("/dev/zero", "/dev/zero is a character device");
  const std::string fifo = Tmp("fifo.png");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  ExpectRefused(fifo, "is a FIFO");
  ExpectRefused(std::getenv("TEST_TMPDIR"), "is a directory");
}

// A file that cannot be opened keeps errno's code and text (NotFound only
// for a missing file; PermissionDenied is not testable as root).
TEST(PngLimits, OpenFailuresKeepTheErrno) {
  absl::StatusOr<Image> missing = ReadPng(Tmp("missing.png"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("No such file or directory"),
            std::string::npos);
  const std::string file = Tmp("plain.png");
  std::ofstream(file) << "x";
  absl::StatusOr<Image> through = ReadPng(file + "/x.png");
  EXPECT_EQ(through.status().code(), absl::StatusCode::kFailedPrecondition)
      << through.status();
  EXPECT_NE(through.status().message().find("Not a directory"),
            std::string::npos);
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(file.c_str(), 0), 0);
    EXPECT_EQ(ReadPng(file).status().code(),
              absl::StatusCode::kPermissionDenied);
  }
  const Image image(1, 1);
  const absl::Status s = WritePng(file + "/x.png", image);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(s.message(),
            "cannot open " + file + "/x.png for writing: Not a directory");
}

}  // namespace
}  // namespace flowtape::viz
