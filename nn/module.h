// Module: a differentiable function with named parameters (zuko/PyTorch style).
//
// A parameter is a constant Tensor with requires_grad set; the Module keeps a
// handle to it under a hierarchical name ("net.layer0.weight"), which is what
// optimizers update and checkpoints save. Submodules are registered by name.
// Parameter tensors share storage with every copy of the handle, so updating a
// parameter in place (optimizers) is seen by the module that owns it.
//
// A buffer (PyTorch's register_buffer) is non-trainable state that is part of
// the function the module computes, e.g. spectral-norm power-iteration
// vectors or an "initialised" flag: a constant that never requires_grad,
// never reaches an optimizer (Parameters() excludes it), and is saved and
// restored by checkpoints under "buffer/<dotted name>". The module updates a
// buffer in place (mutable_data), so the registered handle stays valid.
//
// dtype: a module computes in its parameters' dtype (To converts); its
// forward code creates constants in the input's dtype.
#ifndef FLOWTAPE_NN_MODULE_H_
#define FLOWTAPE_NN_MODULE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/tensor.h"

namespace flowtape::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its submodules, depth first, in
  // registration order, with dotted names.
  std::vector<std::pair<std::string, Tensor>> NamedParameters() const;
  std::vector<Tensor> Parameters() const;
  int64_t NumParameters() const;  // total scalar count
  void ZeroGrad();
  // Every buffer, with the same traversal and dotted names as parameters.
  std::vector<std::pair<std::string, Tensor>> NamedBuffers() const;
  // This module (named "") and every submodule, depth first, in
  // registration order, with the dotted prefixes of their tensors' names
  // ("net.layer0."): what the layout of a layer depends on (nn::Linear's
  // [in, out] weight) is found by type.
  std::vector<std::pair<std::string, const Module*>> NamedModules() const;

  // Converts every parameter and buffer to `dtype` in place: every handle
  // (the module's members, an optimizer's list) sees the new values. Models
  // are built in float64 and converted, so both dtypes start from the same
  // (rounded) values. Call it before recording anything with the module.
  void To(DType dtype);
  // The parameters' dtype (a module without parameters: its buffers',
  // float64 without either); a module whose parameters disagree fails loudly.
  DType dtype() const;

 protected:
  // Registers `value` (made a parameter: requires_grad) and returns it.
  Tensor RegisterParameter(const std::string& name, Tensor value);
  // Registers `value` (a constant without requires_grad) as a buffer and
  // returns it; keep the handle and update it in place.
  Tensor RegisterBuffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> RegisterModule(const std::string& name,
                                    std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  using Named = std::vector<std::pair<std::string, Tensor>>;
  void CheckNewName(const std::string& name) const;
  // Appends this module's (buffers ? buffers_ : params_) and its children's.
  void Collect(const std::string& prefix, bool buffers, Named* out) const;
  Named params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_MODULE_H_
