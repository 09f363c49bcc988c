// Module: a differentiable function with named parameters (zuko/PyTorch style).
//
// A parameter is a constant Tensor with requires_grad set; the Module keeps a
// handle to it under a hierarchical name ("net.layer0.weight"), which is what
// optimizers update and checkpoints save. Submodules are registered by name.
// Parameter tensors share storage with every copy of the handle, so updating a
// parameter in place (optimizers) is seen by the module that owns it.
#ifndef FLOWTAPE_AUTODIFF_NN_MODULE_H_
#define FLOWTAPE_AUTODIFF_NN_MODULE_H_

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

 protected:
  // Registers `value` (made a parameter: requires_grad) and returns it.
  Tensor RegisterParameter(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> RegisterModule(const std::string& name,
                                    std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  void Collect(const std::string& prefix,
               std::vector<std::pair<std::string, Tensor>>* out) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace flowtape::nn

#endif  // FLOWTAPE_AUTODIFF_NN_MODULE_H_
