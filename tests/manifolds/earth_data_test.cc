// The earth catalogue loader: comments, the header spellings, no header,
// bad rows with file:line messages; the 80/10/10 split partitions the data.
#include "benchmarks/earth_data.h"

#include <cmath>
#include <set>

#include "gtest/gtest.h"

namespace flowtape::earth {
namespace {

TEST(EarthData, ParsesEveryHeaderVariantAndComments) {
  for (const char* header :
       {"Latitude,Longitude\n", "lat,long\n", "LATITUDE,LONGITUDE\n", ""}) {
    const std::string text = std::string("# source\n# more\n") + header +
                             "0,0\n90,10\r\n\n-30.5,-120\n";
    auto x = ParseEarthCsv(text, "t.csv");
    ASSERT_TRUE(x.ok()) << x.status();
    ASSERT_EQ(x->dim(0), 3);
    const double* p = x->data();
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
  EXPECT_FALSE(LoadEarthCsv("/nonexistent/file.csv").ok());
}

TEST(EarthData, SplitIsAPartition) {
  Tensor x = Tensor::Empty({101, 3});
  for (int64_t i = 0; i < 303; ++i) x.mutable_data()[i] = i;
  Split s = RandomSplit(x, 3);
  EXPECT_EQ(s.train.dim(0), 80);
  EXPECT_EQ(s.val.dim(0), 10);
  EXPECT_EQ(s.test.dim(0), 11);
  std::set<double> seen;
  for (const Tensor* t : {&s.train, &s.val, &s.test})
    for (int64_t i = 0; i < t->dim(0); ++i) seen.insert(t->data()[3 * i]);
  EXPECT_EQ(seen.size(), 101u);
  Split again = RandomSplit(x, 3), other = RandomSplit(x, 4);
  EXPECT_EQ(again.test.ToVector(), s.test.ToVector());
  EXPECT_NE(other.test.ToVector(), s.test.ToVector());
}

}  // namespace
}  // namespace flowtape::earth
