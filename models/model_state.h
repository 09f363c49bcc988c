// The tensors a model file holds, shared by the catalogue's model files
// (model_file.h) and the sphere model files (sphere_model.h).
//
// ModelState(m) = m's parameters (their names) followed by its buffers
// ("buffer/<name>"), the order nn/checkpoint.h writes them in.
// ValueCount(s) = sum of numel over s (a double: no overflow for any size).
// WithSource(source, s) = s with "<source>: " before its message (OK stays
// OK): a loader's errors name the file.
// CheckDescribedSize(E, F, k) is OK iff E <= 16 F + 2^k, the guard against a
// description of an absurd model (E values estimated from the description,
// F values held by the file); else InvalidArgument naming both.
// CheckBuildsLayout(source, fresh, state, what) is OK iff `fresh` (the
// model a description builds) holds state's names with the same shapes in
// the same order; else
// InvalidArgument "<source>: the model's parameters and buffers are not
// what <what>". The check a saver runs before writing the description.
// ReadDescribedFile(source, path, key, hint) reads a model file: its
// tensors and the description under metadata `key`; InvalidArgument
// "<source>: no model description (metadata '<key>')<hint>" when absent.
#ifndef FLOWTAPE_MODELS_MODEL_STATE_H_
#define FLOWTAPE_MODELS_MODEL_STATE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nn/module.h"
#include "nn/optim.h"  // NamedTensors

namespace flowtape::models {

nn::NamedTensors ModelState(const nn::Module& m);
double ValueCount(const nn::NamedTensors& tensors);
absl::Status WithSource(const std::string& source, const absl::Status& s);
absl::Status CheckDescribedSize(double estimate, double file_values,
                                int slack_log2);
absl::Status CheckBuildsLayout(const std::string& source,
                               const nn::Module& fresh,
                               const nn::NamedTensors& state,
                               const std::string& what);

struct DescribedFile {
  nn::NamedTensors tensors;
  std::string description;
};
absl::StatusOr<DescribedFile> ReadDescribedFile(const std::string& source,
                                                const std::string& path,
                                                const std::string& key,
                                                const std::string& hint = "");

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_MODEL_STATE_H_
