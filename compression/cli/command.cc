#include "compression/cli/command.h"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace flowtape::compression::cli {

std::string ResolveCommandPath(const std::string& path) {
  const char* base = std::getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path[0] == '/' || base == nullptr || *base == '\0') {
    return path;
  }
  return absl::StrCat(base, "/", path);
}

namespace {

// --help, --helpshort, --helpfull, --helpmatch[=S], --helpon[=S],
// --helppackage[=S] (one dash or two) or -h.
bool IsHelpFlag(absl::string_view arg) {
  if (arg == "-h") return true;
  if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
  if (arg == "help" || arg == "helpshort" || arg == "helpfull") return true;
  for (absl::string_view flag : {"helpmatch", "helpon", "helppackage"})
    if (absl::ConsumePrefix(&arg, flag) &&
        (arg.empty() || absl::StartsWith(arg, "=")))
      return true;
  return false;
}

}  // namespace

int RunCommand(const char* name, const char* usage, int argc, char** argv,
               const std::function<absl::Status()>& run) {
  for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    if (IsHelpFlag(argv[i])) {
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

}  // namespace flowtape::compression::cli
