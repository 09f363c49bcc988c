// The tensors a model file holds, shared by the catalogue's model files
// (model_file.h) and the sphere model files (sphere_model.h).
//
// ModelState(m) = m's parameters (their names) followed by its buffers
// ("buffer/<name>"), the order nn/checkpoint.h writes them in.
// ValueCount(s) = sum of numel over s (a double: no overflow for any size).
// SameLayout(a, b) iff a and b hold the same names with the same shapes, in
// the same order: the check that a description builds the model it is
// saved with.
// WithSource(source, s) = s with "<source>: " before its message (OK stays
// OK): a loader's errors name the file.
// CheckDescribedSize(E, F, k) is OK iff E <= 16 F + 2^k, the guard against a
// description of an absurd model (E values estimated from the description,
// F values held by the file); else InvalidArgument naming both.
#ifndef FLOWTAPE_MODELS_MODEL_STATE_H_
#define FLOWTAPE_MODELS_MODEL_STATE_H_

#include <string>

#include "absl/status/status.h"
#include "nn/module.h"
#include "nn/optim.h"  // NamedTensors

namespace flowtape::models {

nn::NamedTensors ModelState(const nn::Module& m);
double ValueCount(const nn::NamedTensors& tensors);
bool SameLayout(const nn::NamedTensors& a, const nn::NamedTensors& b);
absl::Status WithSource(const std::string& source, const absl::Status& s);
absl::Status CheckDescribedSize(double estimate, double file_values,
                                int slack_log2);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_MODEL_STATE_H_
