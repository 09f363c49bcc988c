// Input checks of a command-line binary (cli/cli.h), run before any work:
// flags, loaded image sets, the memory a run's size flags imply, and the
// divergence check of a hand-written training loop.
//   CheckImageSet(set, what, image, classes, min_images): bad input from a
//     data file -> InvalidArgument naming `what`: images not [N, C, H, W] =
//     [N] + image, fewer than min_images, labels count != N or a label
//     outside [0, classes).
//   CheckFlags({{name, value, ok, rule}, ...}): InvalidArgument listing every
//     flag with ok == false as "--name=value: must be rule".
//   CheckRunMemory(footprint, flags): CheckMemory (cli/budget.h)
//     against MemoryLimitBytes(--max_memory_gb); every binary calls it on
//     its size flags before allocating. --max_memory_gb must be finite and
//     >= 0 (0: the memory available, budget.h). The footprint counts
//     max(footprint.replicas, RunReplicas()) model copies.
//   SetRunReplicas(n) / RunReplicas(): the data-parallel replicas of this
//     process's run (1 until set; cli::ParseCommandLine sets the
//     resolved --threads).
//   CheckStepFinite(run, step, loss, params): the divergence check of a
//     hand-written training loop, called after Backward and before the
//     optimizer's Step: OK when `loss` and every entry of every defined
//     gradient of `params` are finite; else FailedPrecondition
//     "<run>: step <step>: non-finite loss (<loss>)" or "<run>: step <step>:
//     non-finite gradient of parameter <k> (loss <loss>)". The loops stop on
//     it and return it, so the run exits non-zero (cli/cli.h).
// The command line itself, output paths and results: cli/cli.h; image sets
// that install themselves on first use: data/image_setup.h.
#ifndef FLOWTAPE_CLI_CHECKS_H_
#define FLOWTAPE_CLI_CHECKS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "autodiff/shape.h"
#include "autodiff/tensor.h"
#include "cli/budget.h"
#include "data/datasets.h"

namespace flowtape::cli {

absl::Status CheckImageSet(const data::ImageSet& set, const std::string& what,
                           const Shape& image, int classes, int64_t min_images);

struct FlagCheck {
  template <typename T>
  FlagCheck(const char* name, T value, bool ok, const char* rule)
      : name(name), value(absl::StrCat(value)), ok(ok), rule(rule) {}
  std::string name;   // without the leading "--"
  std::string value;  // as given
  bool ok;
  std::string rule;  // e.g. "> 0", "-1 (the config's) or > 0"
};
absl::Status CheckFlags(std::initializer_list<FlagCheck> checks);
absl::Status CheckRunMemory(const Footprint& footprint,
                            const std::string& flags);
absl::Status CheckStepFinite(const std::string& run, int64_t step, double loss,
                             const std::vector<Tensor>& params);
void SetRunReplicas(int n);
int RunReplicas();

}  // namespace flowtape::cli

#endif  // FLOWTAPE_CLI_CHECKS_H_
