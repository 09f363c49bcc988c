#include "autodiff/nn/module.h"

namespace flowtape::nn {

Tensor Module::RegisterParameter(const std::string& name, Tensor value) {
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

void Module::Collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Tensor>>* out) const {
  for (const auto& [name, p] : params_) out->emplace_back(prefix + name, p);
  for (const auto& [name, m] : children_) m->Collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::NamedParameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  Collect("", &out);
  return out;
}

std::vector<Tensor> Module::Parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, p] : NamedParameters()) out.push_back(p);
  return out;
}

int64_t Module::NumParameters() const {
  int64_t n = 0;
  for (auto& [name, p] : NamedParameters()) n += p.numel();
  return n;
}

void Module::ZeroGrad() {
  for (auto& [name, p] : NamedParameters()) p.ZeroGrad();
}

}  // namespace flowtape::nn
