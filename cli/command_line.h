// Command-line pieces every binary shares, without any flags of their own
// (cli/cli.h builds the programs' command line on them; tools with
// sub-commands use them directly).
//
// ResolvePath(file): `file` as given if absolute, else relative to
//   $BUILD_WORKING_DIRECTORY (the directory `bazel run` was called from)
//   when it is set and nonempty, else as given (the current directory).
// MakeOutputDir(dir): creates `dir` and its parents (mkdir -p) and probes
//   that a file can be created in it. Errors: FailedPrecondition /
//   PermissionDenied / ... (from errno) "cannot create directory 'p':
//   <strerror>", "cannot write in 'dir': <strerror>".
// ExitIfHelpRequested(name, usage, note, argc, argv): looks for a help flag
//   before any "--" and, if there is one, prints "name: usage", a blank
//   line, "Flags<note>:" and one line per flag, "  --flag  help (default:
//   "value")", sorted by name, to stdout and exits 0:
//     --help, -help, --helpshort, -h   the binary's own flags (those not
//                                      defined in Abseil's sources);
//     --helpfull                       every flag, Abseil's included;
//     --helpmatch=S, --helpon=S,       the flags whose name or defining
//     --helppackage=S                  source file contains S (every flag
//                                      when S is missing).
//   Returns when there is no help flag. Call it before
//   absl::ParseCommandLine (whose own handling of these flags exits 1).
#ifndef FLOWTAPE_CLI_COMMAND_LINE_H_
#define FLOWTAPE_CLI_COMMAND_LINE_H_

#include <string>

#include "absl/status/status.h"

namespace flowtape::cli {

std::string ResolvePath(const std::string& file);
absl::Status MakeOutputDir(const std::string& dir);
void ExitIfHelpRequested(const std::string& name, const std::string& usage,
                         const std::string& note, int argc, char** argv);

}  // namespace flowtape::cli

#endif  // FLOWTAPE_CLI_COMMAND_LINE_H_
