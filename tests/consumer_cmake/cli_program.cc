// A command-line program of one's own on flowtape::cli (find_package
// consumer): cli::Main parses its flag and the shared ones, checks --steps
// (cli::CheckFlags) and writes results.json with the metric. Bad --steps
// exits 1 naming the flag.
#include <cstdint>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "cli/checks.h"
#include "cli/cli.h"

ABSL_FLAG(int64_t, steps, 10, "steps (> 0)");

namespace {

absl::Status Run(flowtape::cli::Experiment& ex) {
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  if (absl::Status s =
          flowtape::cli::CheckFlags({{"steps", steps, steps > 0, "> 0"}});
      !s.ok())
    return s;
  ex.metrics()["steps_squared"] = steps * steps;
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"cli_program", "a consumer's own program: --steps=N",
       flowtape::kFloat64},
      argc, argv, Run);
}
