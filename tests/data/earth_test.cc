// The earth catalogue loader: comments, the header spellings, no header,
// bad rows (also a malformed first record) with file:line messages; the
// shipped catalogues load with their published event counts; a missing file
// says where the data lives; the 80/10/10 split partitions the data, keeps
// the dtype, and its permutation is pinned (libstdc++'s std::shuffle).
#include "data/earth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "gtest/gtest.h"

namespace flowtape::data {
namespace {

TEST(EarthData, ParsesEveryHeaderVariantAndComments) {
  for (const char* header :
       {"Latitude,Longitude\n", "lat,long\n", "LATITUDE,LONGITUDE\n", ""}) {
    const std::string text = std::string("# source\n# more\n") + header +
                             "0,0\n90,10\r\n\n-30.5,-120\n";
    auto x = ParseEarthCsv(text, "t.csv");
    ASSERT_TRUE(x.ok()) << x.status();
    ASSERT_EQ(x->dim(0), 3);
    const double* p = x->data<double>();
    EXPECT_NEAR(p[0], 1.0, 1e-15);  // (0, 0) -> (1, 0, 0)
    EXPECT_NEAR(p[5], 1.0, 1e-15);  // north pole
    const double lat = -30.5 * M_PI / 180, lon = -120 * M_PI / 180;
    EXPECT_NEAR(p[6], std::cos(lat) * std::cos(lon), 1e-15);
    EXPECT_NEAR(p[7], std::cos(lat) * std::sin(lon), 1e-15);
    EXPECT_NEAR(p[8], std::sin(lat), 1e-15);
  }
}

TEST(EarthData, RejectsBadRowsWithLineNumbers) {
  auto bad = ParseEarthCsv("lat,lon\n1,2\nx,3\n", "f.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("f.csv:3"), std::string::npos);
  EXPECT_FALSE(ParseEarthCsv("1,2\n95,0\n", "f.csv").ok());  // |lat| > 90
  EXPECT_FALSE(ParseEarthCsv("1,2,3\n", "f.csv").ok());
  EXPECT_FALSE(ParseEarthCsv("# only comments\n", "f.csv").ok());
  EXPECT_FALSE(ParseEarthCsv("lat,long\n", "f.csv").ok());  // header only
}

// The first record is a header only if it has two fields and neither is a
// number; anything else there is a bad data row, reported at its line.
TEST(EarthData, MalformedFirstRecordIsAnErrorNotAHeader) {
  for (const char* text : {"1,2,3\n4,5\n", "lat\n4,5\n", "lat,5\n4,5\n",
                           "7,long\n4,5\n", "a,b,c\n4,5\n"}) {
    auto x = ParseEarthCsv(text, "f.csv");
    ASSERT_FALSE(x.ok()) << text << " parsed with " << x->dim(0) << " rows";
    EXPECT_EQ(x.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(x.status().message().find("f.csv:1:"), std::string::npos)
        << x.status();
  }
  // After comment lines the line number still counts them.
  auto x = ParseEarthCsv("# c\n1,2,3\n4,5\n", "g.csv");
  ASSERT_FALSE(x.ok());
  EXPECT_NE(x.status().message().find("g.csv:2:"), std::string::npos);
}

TEST(EarthData, MissingFileSaysWhereTheDataLives) {
  auto x = LoadEarthCsv("/nonexistent/volcano.csv");
  ASSERT_FALSE(x.ok());
  EXPECT_EQ(x.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(x.status().message().find("/nonexistent/volcano.csv"),
            std::string::npos);
  EXPECT_NE(x.status().message().find("data/earth"), std::string::npos);
  EXPECT_NE(x.status().message().find("--data_dir"), std::string::npos);
}

// The catalogues shipped in data/earth (runfiles of this test):
// every row parses, the counts are those of the published benchmark, and
// every point is a unit vector.
TEST(EarthData, ShippedCataloguesLoad) {
  const std::string dir = DefaultEarthDataDir();
  const std::pair<const char*, int64_t> sets[] = {
      {"volcano", 827}, {"earthquake", 6120}, {"flood", 4875}, {"fire", 12809}};
  for (const auto& [name, count] : sets) {
    auto x = LoadEarthCsv(dir + "/" + name + ".csv");
    ASSERT_TRUE(x.ok()) << x.status();
    ASSERT_EQ(x->dim(0), count) << name;
    for (int64_t i = 0; i < count; ++i) {
      const double* p = x->data<double>() + 3 * i;
      ASSERT_NEAR(p[0] * p[0] + p[1] * p[1] + p[2] * p[2], 1.0, 1e-12);
    }
  }
}

TEST(EarthData, SplitIsAPartition) {
  Tensor x = Tensor::Empty({101, 3});
  for (int64_t i = 0; i < 303; ++i) x.mutable_data<double>()[i] = i;
  Split s = RandomSplit(x, 3).value();
  EXPECT_EQ(s.train.dim(0), 80);
  EXPECT_EQ(s.val.dim(0), 10);
  EXPECT_EQ(s.test.dim(0), 11);
  std::set<double> seen;
  for (const Tensor* t : {&s.train, &s.val, &s.test})
    for (int64_t i = 0; i < t->dim(0); ++i)
      seen.insert(t->data<double>()[3 * i]);
  EXPECT_EQ(seen.size(), 101u);
  Split again = RandomSplit(x, 3).value(), other = RandomSplit(x, 4).value();
  EXPECT_EQ(again.test.ToVector(), s.test.ToVector());
  EXPECT_NE(other.test.ToVector(), s.test.ToVector());
}

// The split's permutation is written out, so a seed gives the same split
// under any standard library: the first indices are pinned, and under
// libstdc++ (whose std::shuffle produced the published splits) it is
// std::shuffle's permutation for every n, even and odd.
TEST(EarthData, SplitPermutationIsPinnedAndLibstdcxxShuffle) {
  EXPECT_EQ(SplitPermutation(10, 0),
            (std::vector<int64_t>{4, 7, 2, 3, 8, 0, 1, 5, 9, 6}));
  for (int64_t n : {0, 1, 2, 3, 4, 10, 11, 827, 1000}) {
    std::vector<int64_t> p = SplitPermutation(n, 1000 + n);
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sorted[i], i) << n;
#ifdef __GLIBCXX__
    for (uint64_t seed : {uint64_t{0}, uint64_t{1000}, uint64_t{1004}}) {
      std::vector<int64_t> expected(n);
      std::iota(expected.begin(), expected.end(), 0);
      std::mt19937_64 gen(seed);
      std::shuffle(expected.begin(), expected.end(), gen);
      EXPECT_EQ(SplitPermutation(n, seed), expected) << n << " " << seed;
    }
#endif
  }
}

// A float32 catalogue splits into the same rows, in float32.
TEST(EarthData, SplitKeepsTheDtype) {
  Tensor x = Tensor::Empty({37, 3});
  for (int64_t i = 0; i < 111; ++i) x.mutable_data<double>()[i] = i;
  Split s64 = RandomSplit(x, 5).value();
  Split s32 = RandomSplit(Cast(x, kFloat32), 5).value();
  ASSERT_EQ(s32.test.dtype(), kFloat32);
  EXPECT_EQ(Cast(s32.train, kFloat64).ToVector(), s64.train.ToVector());
  EXPECT_EQ(Cast(s32.test, kFloat64).ToVector(), s64.test.ToVector());
}

// Too few rows for a nonempty validation and test part: an error naming the
// minimum, not an empty validation set (whose "loss" would be the training
// loss) or an empty training set.
TEST(EarthData, SplitNeedsTenRows) {
  for (int64_t n : {0, 1, 2, 9}) {
    Tensor x = Tensor::Zeros({n, 3});
    auto s = RandomSplit(x, 0, "tiny.csv");
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(
        s.status().message().find(absl::StrCat("tiny.csv: ", n,
                                               " points; the 80/10/10 split "
                                               "needs at least 10")),
        std::string::npos)
        << s.status();
  }
  Split ten = RandomSplit(Tensor::Zeros({10, 3}), 0).value();
  EXPECT_EQ(ten.train.dim(0), 8);
  EXPECT_EQ(ten.val.dim(0), 1);
  EXPECT_EQ(ten.test.dim(0), 1);
  EXPECT_FALSE(RandomSplit(Tensor::Zeros({12}), 0).ok());  // not [n, d]
}

}  // namespace
}  // namespace flowtape::data
