// flowtape/version.h agrees with the file VERSION, and FLOWTAPE_VERSION
// orders versions.
#include "flowtape/version.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

TEST(VersionTest, HeaderMatchesVersionFile) {
  const char* root = std::getenv("TEST_SRCDIR");
  ASSERT_NE(root, nullptr);
  std::ifstream in(std::string(root) + "/flowtape/VERSION");
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, FLOWTAPE_VERSION_STRING);
  EXPECT_EQ(absl::StrCat(FLOWTAPE_VERSION_MAJOR, ".", FLOWTAPE_VERSION_MINOR,
                         ".", FLOWTAPE_VERSION_PATCH),
            FLOWTAPE_VERSION_STRING);
}

TEST(VersionTest, NumberOrdersVersions) {
  EXPECT_EQ(FLOWTAPE_VERSION, FLOWTAPE_VERSION_MAJOR * 10000 +
                                  FLOWTAPE_VERSION_MINOR * 100 +
                                  FLOWTAPE_VERSION_PATCH);
  EXPECT_LT(FLOWTAPE_VERSION_MINOR, 100);
  EXPECT_LT(FLOWTAPE_VERSION_PATCH, 100);
}

}  // namespace
