// The tensors a model file holds, shared by the catalogue's model files
// (model_file.h) and the sphere model files (sphere_model.h).
//
// ModelState(m) = m's parameters (their names) followed by its buffers
// ("buffer/<name>"), the order nn/checkpoint.h writes them in.
// ValueCount(s) = sum of numel over s (a double: no overflow for any size).
// SameLayout(a, b) iff a and b hold the same names with the same shapes, in
// the same order: the check that a description builds the model it is
// saved with.
#ifndef FLOWTAPE_MODELS_MODEL_STATE_H_
#define FLOWTAPE_MODELS_MODEL_STATE_H_

#include "nn/module.h"
#include "nn/optim.h"  // NamedTensors

namespace flowtape::models {

nn::NamedTensors ModelState(const nn::Module& m);
double ValueCount(const nn::NamedTensors& tensors);
bool SameLayout(const nn::NamedTensors& a, const nn::NamedTensors& b);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_MODEL_STATE_H_
