#include "cli/command_line.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <map>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace flowtape::cli {
namespace {

bool IsAbseilFlag(const absl::CommandLineFlag& flag) {
  return absl::StrContains(flag.Filename(), "absl/");
}

// What a help flag asks for: the binary's own flags, every flag, or the
// flags whose name or defining file contains `match`.
struct HelpRequest {
  enum Kind { kNone, kOwn, kAll, kMatch } kind = kNone;
  std::string match;
};

HelpRequest FindHelpRequest(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    if (!absl::ConsumePrefix(&a, "--")) absl::ConsumePrefix(&a, "-");
    if (a == "help" || a == "helpshort" || a == "h")
      return {HelpRequest::kOwn, ""};
    if (a == "helpfull") return {HelpRequest::kAll, ""};
    for (absl::string_view flag : {"helpmatch", "helpon", "helppackage"}) {
      absl::string_view rest = a;
      if (!absl::ConsumePrefix(&rest, flag)) continue;
      if (rest.empty()) return {HelpRequest::kMatch, ""};
      if (absl::ConsumePrefix(&rest, "="))
        return {HelpRequest::kMatch, std::string(rest)};
    }
  }
  return {};
}

}  // namespace

std::string ResolvePath(const std::string& file) {
  if (!file.empty() && file[0] == '/') return file;
  const char* dir = std::getenv("BUILD_WORKING_DIRECTORY");
  return dir && *dir ? absl::StrCat(dir, "/", file) : file;
}

absl::Status MakeOutputDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("empty directory name");
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    const std::string prefix = dir.substr(0, i);
    if (::mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST)
      return absl::ErrnoToStatus(
          errno, absl::StrCat("cannot create directory '", prefix, "'"));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot create directory '", dir, "'"));
  if (!S_ISDIR(st.st_mode))
    return absl::ErrnoToStatus(
        ENOTDIR, absl::StrCat("cannot create directory '", dir, "'"));
  std::string probe = absl::StrCat(dir, "/.write_probe_XXXXXX");
  const int fd = ::mkstemp(probe.data());
  if (fd < 0)
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot write in '", dir, "'"));
  ::close(fd);
  ::unlink(probe.c_str());
  return absl::OkStatus();
}

void ExitIfHelpRequested(const std::string& name, const std::string& usage,
                         const std::string& note, int argc, char** argv) {
  const HelpRequest help = FindHelpRequest(argc, argv);
  if (help.kind == HelpRequest::kNone) return;
  std::cout << name << ": " << usage << "\n\nFlags" << note << ":\n";
  std::map<std::string, const absl::CommandLineFlag*> sorted;
  for (const auto& [flag_name, flag] : absl::GetAllFlags()) {
    const bool shown =
        help.kind == HelpRequest::kAll ||
        (help.kind == HelpRequest::kOwn && !IsAbseilFlag(*flag)) ||
        (help.kind == HelpRequest::kMatch &&
         (absl::StrContains(flag_name, help.match) ||
          absl::StrContains(flag->Filename(), help.match)));
    if (shown) sorted[std::string(flag_name)] = flag;
  }
  for (const auto& [flag_name, flag] : sorted)
    std::cout << absl::StrFormat("  --%s  %s (default: \"%s\")\n", flag_name,
                                 flag->Help(), flag->DefaultValue());
  if (help.kind == HelpRequest::kOwn)
    std::cout << "\n--helpfull lists Abseil's flags too.\n";
  std::cout.flush();
  std::exit(0);
}

}  // namespace flowtape::cli
