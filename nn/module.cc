#include "nn/module.h"

#include "autodiff/check.h"

namespace flowtape::nn {

void Module::CheckNewName(const std::string& name) const {
  for (const Named* list : {&params_, &buffers_})
    for (const auto& [n, t] : *list)
      FT_CHECK(n != name, "module: name '", name, "' registered twice");
}

Tensor Module::RegisterParameter(const std::string& name, Tensor value) {
  CheckNewName(name);
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Tensor Module::RegisterBuffer(const std::string& name, Tensor value) {
  CheckNewName(name);
  FT_CHECK(value.defined() && value.is_constant() && !value.requires_grad(),
           "module: buffer '", name,
           "' must be a defined constant without requires_grad");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::Collect(const std::string& prefix, bool buffers,
                     Named* out) const {
  for (const auto& [name, t] : buffers ? buffers_ : params_)
    out->emplace_back(prefix + name, t);
  for (const auto& [name, m] : children_)
    m->Collect(prefix + name + ".", buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::NamedParameters() const {
  Named out;
  Collect("", /*buffers=*/false, &out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::NamedBuffers() const {
  Named out;
  Collect("", /*buffers=*/true, &out);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::NamedModules()
    const {
  std::vector<std::pair<std::string, const Module*>> out = {{"", this}};
  for (const auto& [name, m] : children_)
    for (const auto& [prefix, sub] : m->NamedModules())
      out.emplace_back(name + "." + prefix, sub);
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

void Module::To(DType dtype) {
  for (const Named& list : {NamedParameters(), NamedBuffers()})
    for (const auto& [name, t] : list) t.storage()->ConvertTo(dtype);
}

DType Module::dtype() const {
  Named params = NamedParameters();
  if (params.empty()) params = NamedBuffers();
  if (params.empty()) return kFloat64;
  const DType d = params.front().second.dtype();
  for (const auto& [name, p] : params)
    FT_CHECK(p.dtype() == d, "module: parameter '", name, "' is ",
             DTypeName(p.dtype()), ", '", params.front().first, "' is ",
             DTypeName(d));
  return d;
}

void Module::ZeroGrad() {
  for (auto& [name, p] : NamedParameters()) p.ZeroGrad();
}

}  // namespace flowtape::nn
