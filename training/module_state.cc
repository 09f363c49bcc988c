#include "training/module_state.h"

#include <cstring>

#include "autodiff/check.h"

namespace flowtape::training {
namespace {

size_t Bytes(const Tensor& t) { return t.numel() * DTypeSize(t.dtype()); }

}  // namespace

ModuleState::ModuleState(const nn::Module& module,
                         const nn::Optimizer* optimizer,
                         const nn::Module* also) {
  tensors_ = module.Parameters();
  for (const auto& [name, t] : module.NamedBuffers()) tensors_.push_back(t);
  if (optimizer != nullptr)
    for (const auto& [name, t] : optimizer->NamedState()) tensors_.push_back(t);
  if (also != nullptr) {
    for (const Tensor& t : also->Parameters()) tensors_.push_back(t);
    for (const auto& [name, t] : also->NamedBuffers()) tensors_.push_back(t);
  }
  size_t total = 0;
  for (const Tensor& t : tensors_) {
    offsets_.push_back(total);
    sizes_.push_back(Bytes(t));
    total += sizes_.back();
  }
  bytes_.resize(total);
  Capture();
}

void ModuleState::Capture() {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const size_t n = Bytes(tensors_[i]);
    FT_CHECK(n == sizes_[i], "module_state: tensor ", i,
             " changed size or dtype");
    std::memcpy(bytes_.data() + offsets_[i], tensors_[i].raw_data(), n);
  }
}

bool ModuleState::SetData(const char* data, size_t size) {
  if (size != bytes_.size()) return false;
  std::memcpy(bytes_.data(), data, size);
  return true;
}

void ModuleState::Restore() const {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor t = tensors_[i];  // shared storage
    const size_t n = Bytes(t);
    FT_CHECK(n == sizes_[i], "module_state: tensor ", i,
             " changed size or dtype");
    void* dst = t.dtype() == kFloat32
                    ? static_cast<void*>(t.mutable_data<float>())
                    : static_cast<void*>(t.mutable_data<double>());
    std::memcpy(dst, bytes_.data() + offsets_[i], n);
  }
}

}  // namespace flowtape::training
