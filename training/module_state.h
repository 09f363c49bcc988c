// ModuleState: a preallocated copy of everything a training step changes:
// a module's parameters and buffers (spectral-norm vectors, ActNorm's flag)
// and, optionally, an optimizer's state (moments, step counts) and a second
// module's parameters and buffers (a parameter EMA).
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
  // `optimizer` and `also` may be null.
  ModuleState(const nn::Module& module, const nn::Optimizer* optimizer,
              const nn::Module* also = nullptr);

  void Capture();
  void Restore() const;
  // Parameters, buffers, optimizer state, then `also`'s (shared storage).
  const std::vector<Tensor>& tensors() const { return tensors_; }
  int64_t bytes() const { return static_cast<int64_t>(bytes_.size()); }
  // The captured bytes (each tensor's values in its dtype, host byte order,
  // in tensors() order), and their replacement by bytes of the same layout
  // (a saved copy; false, nothing changed, when the size differs).
  const std::vector<char>& data() const { return bytes_; }
  bool SetData(const char* data, size_t size);

 private:
  std::vector<Tensor> tensors_;
  std::vector<size_t> offsets_, sizes_;
  std::vector<char> bytes_;
};

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_MODULE_STATE_H_
