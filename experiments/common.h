// Small helpers shared by the experiment binaries.
//   OutputPath(f): where `bazel run` users expect files: the directory they
//     ran bazel from ($BUILD_WORKING_DIRECTORY), else the current directory.
//   LoadImageSetOrSetup(name, split): data::LoadImageSet; if the data set is
//     missing, runs experiments/setup_data.sh (shipped as runfile data) once
//     and retries; the error names the install command otherwise.
//   WritePngOrWarn(image, file): writes OutputPath(file), printing the path.
//   RunMain(argc, argv, name, run): parses flags, runs `run`, prints a failed
//     Status as "name: status" and returns the process exit code.
#ifndef FLOWTAPE_EXPERIMENTS_COMMON_H_
#define FLOWTAPE_EXPERIMENTS_COMMON_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "flows/data/datasets.h"
#include "flows/viz/png.h"

namespace flowtape::experiments {

std::string OutputPath(const std::string& file);
absl::StatusOr<data::ImageSet> LoadImageSetOrSetup(const std::string& name,
                                                   const std::string& split);
void WritePngOrWarn(const viz::Image& image, const std::string& file);
int RunMain(int argc, char** argv, const char* name,
            const std::function<absl::Status()>& run);

}  // namespace flowtape::experiments

#endif  // FLOWTAPE_EXPERIMENTS_COMMON_H_
