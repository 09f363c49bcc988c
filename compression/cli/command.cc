#include "compression/cli/command.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"

namespace flowtape::compression {

std::string ResolveCommandPath(const std::string& path) {
  const char* base = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || base == nullptr || *base == '\0') {
    return path;
  }
  return absl::StrCat(base, "/", path);
}

int RunCommand(const char* name, const char* usage, int argc, char** argv,
               const std::function<absl::Status()>& run) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 ||
        std::strcmp(argv[i], "-help") == 0 ||
        std::strcmp(argv[i], "--helpshort") == 0 ||
        std::strcmp(argv[i], "-h") == 0) {
      std::cout << usage;
      return 0;
    }
  }
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::cerr << name << ": unexpected positional argument '" << rest[1]
              << "' (flags are --name=value; --help lists them)\n";
    return 1;
  }
  const absl::Status s = run();
  if (!s.ok()) {
    std::cerr << name << ": " << s << "\n";
    return 1;
  }
  return 0;
}

}  // namespace flowtape::compression
