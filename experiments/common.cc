#include "experiments/common.h"

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"

namespace flowtape::experiments {

std::string OutputPath(const std::string& file) {
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  return dir && *dir ? absl::StrCat(dir, "/", file) : file;
}

absl::StatusOr<data::ImageSet> LoadImageSetOrSetup(const std::string& name,
                                                   const std::string& split) {
  auto set = data::LoadImageSet(name, split);
  if (!absl::IsNotFound(set.status())) return set;
  const std::string script = "experiments/setup_data.sh";
  if (!std::ifstream(script).good()) return set;
  std::cerr << "data set '" << name << "' missing; running " << script << "\n";
  if (std::system(("bash " + script + " " + name).c_str()) != 0)
    return absl::UnavailableError(absl::StrCat(
        script, " failed; install by hand: ", data::SetupCommand(name)));
  return data::LoadImageSet(name, split);
}

void WritePngOrWarn(const viz::Image& image, const std::string& file) {
  const std::string path = OutputPath(file);
  absl::Status s = viz::WritePng(path, image);
  if (s.ok())
    std::cout << "wrote " << path << "\n";
  else
    std::cerr << "warning: " << s << "\n";
}

int RunMain(int argc, char** argv, const char* name,
            const std::function<absl::Status()>& run) {
  absl::ParseCommandLine(argc, argv);
  absl::Status s = run();
  if (!s.ok()) {
    std::cerr << name << ": " << s << "\n";
    return 1;
  }
  return 0;
}

}  // namespace flowtape::experiments
