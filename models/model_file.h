// Model files: a catalogue model (models/zoo.h) saved with its
// architecture, so LoadModel rebuilds and loads it without the code that
// made it.
//
// A model file is a checkpoint (nn/checkpoint.h, format version 2) of the
// model's parameters and buffers ("buffer/<name>") whose metadata entry
// "model" holds the ModelSpec as JSON (models/model_spec.h: family,
// ModelConfig, dtype). LoadCheckpoint reads it into a model built by hand;
// LoadModel needs nothing but the file:
//   1. read and check the file (checkpoint.h's checks), parse the spec;
//   2. guard the size: the model the spec describes must be about as large
//      as the file (below), so a hostile spec cannot make LoadModel build a
//      huge model before any shape is compared;
//   3. MakeModel(family, config) (float64, Rng(0)), then To(dtype);
//   4. restore every parameter and buffer (names, shapes and value domains
//      checked as LoadCheckpoint does; values converted to the model's
//      dtype). Every state a catalogue model computes with is a parameter
//      or buffer, so the loaded model's log-probabilities equal the saved
//      one's bit for bit. Files of maf / iaf / nsf_ar written with reversal
//      layers between the steps are first rewritten to the folded stack
//      (zoo.h, UpgradeFoldedReversals): same density, to rounding.
// Size guard: with E = prod(event), K = context_dim, h = hidden,
// S = max(layers, levels * depth) steps and F the values in the file,
//   S * ((E/2 + K) h_0 + sum_i h_i h_{i+1} + h_last (E/2) (3 bins + 1)
//        + channels^2 + 2 M E) + M (2 E + 1) [+ M E (E - 1) / 2]
//   <=  16 F + 2^26
// (M = components: gf's kernels per layer, a mixture base's components;
// the bracket for base "gmm_full", its Cholesky factors' lower triangles)
// Each term is (at most a small factor above) a layer that the families
// using that field build, and a field a family ignores is covered by the
// 2^26 allowance while it keeps a modest value. SaveModel applies the same
// guard, so every file it writes loads (a spec with, say, hidden [4096,
// 4096] on a family that ignores it is refused when saving).
// Errors name the file: NotFound / DataLoss / InvalidArgument from the
// checkpoint reader; InvalidArgument "model file 'p': no model description
// (metadata 'model')" for a plain checkpoint; "model file 'p': model
// description: <field>: ..." for a bad spec; MakeModel's Status for a
// config the family refuses; a missing, unknown or mis-shaped tensor.
//
// SaveModel(path, spec, model) checks that `model` is what `spec` builds
// (same parameter and buffer names and shapes, and model.dtype() ==
// spec.dtype) and writes the file atomically (checkpoint.h).
#ifndef FLOWTAPE_MODELS_MODEL_FILE_H_
#define FLOWTAPE_MODELS_MODEL_FILE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow_model.h"
#include "models/model_spec.h"

namespace flowtape::models {

absl::Status SaveModel(const std::string& path, const ModelSpec& spec,
                       const flows::FlowModel& model);
absl::StatusOr<std::shared_ptr<flows::FlowModel>> LoadModel(
    const std::string& path);
// The spec stored in a model file (without building the model).
absl::StatusOr<ModelSpec> ReadModelSpec(const std::string& path);
// The size guard above, for code that builds a model from a spec it was
// given (a flag, another file's metadata): OK iff the model `config`
// describes has at most 16 file_values + 2^26 values by the estimate above
// (file_values = 0 for a spec without a file: 2^26 values, 512 MiB in
// float64), else InvalidArgument "model description: config: describes a
// model of about V values, ...".
absl::Status CheckModelSize(const ModelConfig& config, double file_values);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_MODEL_FILE_H_
