// Hostile inputs to the loaders (CSV, IDX, digits, earth): non-regular files
// (directory, FIFO, /dev/zero) are refused by name without reading or
// blocking; open failures keep errno's code and text; files and gzip streams
// over the per-format size limit stop at the limit; CSV and earth numbers are
// strict decimals (no hex, inf, nan, trailing garbage, empty fields) and
// overflow / underflow are errors naming file:line instead of a silent inf or
// 0.
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "data/csv.h"
#include "data/datasets.h"
#include "data/earth.h"
#include "data/idx.h"
#include "gtest/gtest.h"

namespace flowtape::data {
namespace {

std::string TmpPath(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

void ExpectError(const absl::Status& s, absl::StatusCode code,
                 const std::string& needle) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(needle), std::string::npos)
      << "'" << needle << "' not in: " << s;
}

// Every loader on the same non-regular path gives InvalidArgument naming
// the path and its kind.
void ExpectEveryLoaderRefuses(const std::string& path,
                              const std::string& kind) {
  SCOPED_TRACE(path);
  const std::string want = path + " is " + kind + ", not a regular file";
  auto code = absl::StatusCode::kInvalidArgument;
  ExpectError(LoadCsv(path).status(), code, want);
  ExpectError(LoadIdxImages(path).status(), code, want);
  ExpectError(LoadIdxLabels(path).status(), code, want);
  ExpectError(LoadEarthCsv(path).status(), code, want);
  ExpectError(LoadDigitsCsv(path, "train").status(), code, want);
}

TEST(LoaderFiles, DirectoryIsNotCorruptGzipButNotARegularFile) {
  const std::string dir = TmpPath("a_directory");
  mkdir(dir.c_str(), 0755);
  ExpectEveryLoaderRefuses(dir, "a directory");
}

TEST(LoaderFiles, FifoIsRefusedWithoutBlocking) {
  const std::string fifo = TmpPath("a_fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  ExpectEveryLoaderRefuses(fifo, "a FIFO");  // no writer: would block
}

TEST(LoaderFiles, DevZeroIsRefusedInsteadOfReadForever) {
  ExpectEveryLoaderRefuses("/dev/zero", "a character device");
}

// A file that cannot be opened keeps errno's code and text: a missing file
// is NotFound, a path through a regular file (ENOTDIR) FailedPrecondition,
// an unreadable one (not testable as root) PermissionDenied.
TEST(LoaderFiles, OpenFailuresKeepTheErrno) {
  const std::string file = TmpPath("plain.csv");
  std::ofstream(file) << "1,2\n";
  ExpectError(LoadCsv(TmpPath("missing.csv")).status(),
              absl::StatusCode::kNotFound, "No such file or directory");
  ExpectError(LoadCsv(file + "/x.csv").status(),
              absl::StatusCode::kFailedPrecondition, "Not a directory");
  if (::geteuid() != 0) {
    ASSERT_EQ(::chmod(file.c_str(), 0), 0);
    ExpectError(LoadCsv(file).status(), absl::StatusCode::kPermissionDenied,
                "Permission denied");
  }
}

// 129 MiB of text that gzip compresses to ~130 KB: the CSV limit is 128 MiB.
TEST(LoaderFiles, GzipBombStopsAtTheDecompressedLimit) {
  const std::string path = TmpPath("bomb.csv.gz");
  gzFile f = gzopen(path.c_str(), "wb9");
  const std::string chunk(1 << 20, '\n');
  for (int i = 0; i < 129; ++i) gzwrite(f, chunk.data(), chunk.size());
  gzclose(f);
  ExpectError(LoadCsv(path).status(), absl::StatusCode::kInvalidArgument,
              "decompresses to more than 134217728 bytes, the limit for CSV");
  ExpectError(LoadIdxImages(path).status(), absl::StatusCode::kInvalidArgument,
              "the limit for IDX");
}

TEST(LoaderFiles, PlainFileOverTheLimitIsRefusedBeforeReading) {
  const std::string path = TmpPath("big.csv");
  {
    std::ofstream out(path, std::ios::binary);
    out.seekp((int64_t{16} << 20) + 10);  // sparse: no disk, 16 MiB + 11
    out.put('1');
  }
  ExpectError(LoadEarthCsv(path).status(), absl::StatusCode::kInvalidArgument,
              "16777227 bytes, above the 16777216-byte limit for earth");
}

// CSV numbers: what strtod would have accepted silently.
TEST(CsvNumbers, OnlyStrictFiniteNormalDecimals) {
  auto expect = [](const std::string& field, const std::string& needle) {
    SCOPED_TRACE(field);
    auto r = ParseCsv("1,2\n3," + field + "\n", {}, "f.csv");
    ExpectError(r.status(), absl::StatusCode::kInvalidArgument,
                "f.csv:2: column 2: ");
    ExpectError(r.status(), absl::StatusCode::kInvalidArgument, needle);
  };
  expect("0x1p4", "cannot parse '0x1p4'");  // strtod: 16
  expect("0X10", "cannot parse");
  expect("1e-999", "underflows");  // strtod: 0
  expect("-1e-999", "underflows");
  expect("1e-310", "underflows");  // subnormal: precision lost
  expect("1e999", "overflows");    // strtod: inf
  expect("-1e400", "overflows");
  expect("inf", "non-finite value 'inf'");
  expect("-Infinity", "non-finite");
  expect("nan", "non-finite value 'nan'");
  expect("NAN(123)", "cannot parse");
  expect("1.5abc", "cannot parse '1.5abc'");
  expect("1.5 2", "cannot parse");
  expect("", "cannot parse ''");
  expect("1e", "cannot parse");
  expect(".", "cannot parse");
  expect("+-1", "cannot parse");
  expect(std::string("1\0", 2), "cannot parse '1\\x00'");
  EXPECT_NE(ParseCsv("1,2\n3,1,5\n").status().message().find("ragged"),
            std::string::npos);
}

TEST(CsvNumbers, ValidDecimalsAreExact) {
  Tensor t =
      ParseCsv(" +1.5 ,-.25,3.,0e-999\n2.2250738585072014e-308,1e308,-0,7E+2\n")
          .value();
  EXPECT_EQ(t.ToVector(),
            (std::vector<double>{1.5, -0.25, 3.0, 0.0, 2.2250738585072014e-308,
                                 1e308, -0.0, 700.0}));
}

TEST(EarthNumbers, StrictDecimalsAndNoSilentZero) {
  auto expect = [](const std::string& text, const std::string& needle) {
    SCOPED_TRACE(text);
    ExpectError(ParseEarthCsv(text, "e.csv").status(),
                absl::StatusCode::kInvalidArgument, needle);
  };
  expect("lat,lon\n0x1p4,5\n", "e.csv:2: latitude: cannot parse '0x1p4'");
  expect("1,2\n1e-999,5\n", "e.csv:2: latitude: '1e-999' underflows");
  expect("1,2\n5,1e-400\n", "e.csv:2: longitude: '1e-400' underflows");
  // Not a header: fields that start like numbers are data.
  expect("1e999,1e999\n1,2\n", "e.csv:1: latitude: '1e999' overflows");
  expect("1,2\n3,4 5\n", "e.csv:2: longitude: cannot parse");
  expect("1,2\n,5\n", "e.csv:2: latitude: cannot parse ''");
}

}  // namespace
}  // namespace flowtape::data
