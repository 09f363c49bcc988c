// ModelSpec: what builds a catalogue model (models/zoo.h): the family name,
// its ModelConfig and the dtype, as JSON. A model file (model_file.h)
// stores it beside the tensors.
//
//   {"format": "flowtape.model", "version": 1,
//    "family": "maf", "dtype": "float64",
//    "config": {"event": [3], "layers": 8, "hidden": [64, 64],
//               "context_dim": 0, "levels": 2, "depth": 4,
//               "channels": 64, "bins": 8, "bound": 4.0, "train_t": false,
//               "components": 8, "base": "gmm"}}   ("gmm_full": full
//               covariances)
//
// Reading is strict: "format", "version", "family", "dtype" and "config"
// are required; a config field left out takes ModelConfig{}'s default (so
// files stay readable when ModelConfig grows a field); an unknown key
// anywhere, a wrong JSON type or a value out of range is InvalidArgument
// naming the field ("config.hidden[1]: want an integer in [1, 65536], got
// 0"). The family must be in the catalogue (its domain is checked when
// the model is built). Ranges (caps keep a hostile file from asking for an
// absurd model; each is far above the catalogue's use):
//   event        [D] or [C, H, W], each in [1, 65536], product <= 2^24
//   layers       [1, 4096]          hidden  1..16 sizes, each [1, 65536]
//   context_dim  [0, 65536]         levels  [1, 8]     depth [1, 1024]
//   channels     [1, 16384]         bins    [1, 1024]
//   bound        finite, in (0, 1e6]                   train_t  boolean
//   components   [1, 4096]          base    "family", "gmm", "gmm_full",
//                                           "factorized" or "resampled"
//   dtype        "float32" or "float64"
// Writing gives one line of JSON (keys in alphabetical order) that reads
// back to an equal spec (bound is printed with 17 significant digits);
// "components" and "base" are written only when they differ from their
// defaults (8, "family"), so such files read in versions without them.
#ifndef FLOWTAPE_MODELS_MODEL_SPEC_H_
#define FLOWTAPE_MODELS_MODEL_SPEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autodiff/dtype.h"
#include "models/zoo.h"

namespace flowtape::models {

struct ModelSpec {
  std::string family;  // a ZooNames() entry
  ModelConfig config;
  DType dtype = kFloat64;
  // InvalidArgument naming the first field outside the ranges above (the
  // reader's words without "model description: ", e.g. "config.hidden[1]:
  // want an integer in [1, 65536], got 0"), or a family not in the
  // catalogue. The reader and SaveModel call it; MakeModel adds the
  // family's own checks.
  absl::Status Validate() const;
};

std::string ModelSpecToJson(const ModelSpec& spec);
absl::StatusOr<ModelSpec> ModelSpecFromJson(absl::string_view json);

// Equal family, dtype and every ModelConfig field.
bool operator==(const ModelSpec& a, const ModelSpec& b);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_MODEL_SPEC_H_
