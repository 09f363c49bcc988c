// The shared main of flowtape-compress and flowtape-decompress, following
// cli/cli.h where it applies (these commands write no results.json):
// --help / --helpshort / --helpfull / --helpmatch / --helpon / --helppackage
// / -h (before any "--") print the usage, which lists every flag, to stdout
// (exit 0); an unknown
// flag (Abseil's message) or a positional argument exits 1; a failed run
// prints "<name>: <status>" to stderr and exits 1. Relative paths resolve
// against $BUILD_WORKING_DIRECTORY when it is set (bazel run).
#ifndef FLOWTAPE_COMPRESSION_CLI_COMMAND_H_
#define FLOWTAPE_COMPRESSION_CLI_COMMAND_H_

#include <functional>
#include <string>

#include "absl/status/status.h"

namespace flowtape::compression::cli {

std::string ResolveCommandPath(const std::string& path);
int RunCommand(const char* name, const char* usage, int argc, char** argv,
               const std::function<absl::Status()>& run);

}  // namespace flowtape::compression::cli

#endif  // FLOWTAPE_COMPRESSION_CLI_COMMAND_H_
