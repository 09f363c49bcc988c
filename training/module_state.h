// ModuleState: a preallocated copy of everything a training step changes:
// a module's parameters and buffers (spectral-norm vectors, ActNorm's flag)
// and, optionally, an optimizer's state (moments, step counts).
//
// The storage is allocated once, at construction, in each tensor's own dtype;
// Capture() and Restore() are plain memcpy's of those bytes (no allocation,
// no conversion), so the NaN guard can keep the last good state every step
// for the cost of copying it once. Restoring writes into the tensors' shared
// storage: every handle (the module's members, the optimizer's list) sees it.
// The tensors are fixed at construction (call Module::To before).
#ifndef FLOWTAPE_TRAINING_MODULE_STATE_H_
#define FLOWTAPE_TRAINING_MODULE_STATE_H_

#include <cstdint>
#include <vector>

#include "autodiff/tensor.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace flowtape::training {

class ModuleState {
 public:
  // `optimizer` may be null (the module's state only).
  ModuleState(const nn::Module& module, const nn::Optimizer* optimizer);

  void Capture();
  void Restore() const;
  // Parameters, buffers, then optimizer state (shared storage).
  const std::vector<Tensor>& tensors() const { return tensors_; }
  int64_t bytes() const { return static_cast<int64_t>(bytes_.size()); }

 private:
  std::vector<Tensor> tensors_;
  std::vector<size_t> offsets_, sizes_;
  std::vector<char> bytes_;
};

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_MODULE_STATE_H_
