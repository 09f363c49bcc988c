#include "io/torch_exchange.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "flows/spectral_norm.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"

namespace flowtape::io {
namespace {

// [a, b] -> [b, a], a new constant of the same dtype.
Tensor Transposed(const Tensor& t) {
  const int64_t a = t.dim(0), b = t.dim(1);
  Tensor out = Tensor::Empty({b, a}, t.dtype());
  VisitDType(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* src = t.data<T>();
    T* dst = out.mutable_data<T>();
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j) dst[j * a + i] = src[i * b + j];
  });
  return out;
}

}  // namespace

std::set<std::string> TransposedNames(const nn::Module& module) {
  std::set<std::string> out;
  for (const auto& [prefix, m] : module.NamedModules()) {
    if (dynamic_cast<const nn::Linear*>(m) != nullptr ||
        dynamic_cast<const flows::SpectralLinear*>(m) != nullptr)
      out.insert(prefix + "weight");
    if (dynamic_cast<const nn::MaskedLinear*>(m) != nullptr) {
      out.insert(prefix + "weight");
      out.insert(prefix + "mask");
    }
  }
  return out;
}

absl::Status ExportSafetensors(const std::string& path,
                               const nn::Module& module,
                               const Metadata& metadata) {
  const std::set<std::string> transposed = TransposedNames(module);
  nn::NamedTensors out;
  for (const auto& list : {module.NamedParameters(), module.NamedBuffers()})
    for (const auto& [name, t] : list)
      out.emplace_back(name, transposed.count(name) > 0 ? Transposed(t) : t);
  return WriteSafetensors(path, out, metadata);
}

absl::Status ImportSafetensors(const std::string& path, nn::Module& module,
                               Metadata* metadata) {
  FT_ASSIGN_OR_RETURN(const nn::NamedTensors file,
                      ReadSafetensors(path, metadata));
  const std::string source = absl::StrCat("safetensors '", path, "'");
  const std::set<std::string> transposed = TransposedNames(module);
  std::map<std::string, Tensor> own;
  for (const auto& [name, t] : module.NamedParameters()) own[name] = t;
  std::set<std::string> buffers;
  for (const auto& [name, t] : module.NamedBuffers()) {
    own[name] = t;
    buffers.insert(name);
  }
  nn::NamedTensors entries;
  for (const auto& [name, t] : file) {
    auto it = own.find(name);
    if (it == own.end())
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": unknown name '", name,
                       "' (not a parameter or buffer of the module)"));
    Tensor value = t;
    if (transposed.count(name) > 0) {
      const Tensor& mine = it->second;
      const Shape want{mine.dim(1), mine.dim(0)};
      if (t.shape() != want)
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": '", name, "' has shape ", t.shape().ToString(),
            " in the file but ", want.ToString(),
            " in the module (PyTorch's [out, in] layout)"));
      value = Transposed(t);
    }
    entries.emplace_back(buffers.count(name) > 0 ? "buffer/" + name : name,
                         value);
  }
  return nn::RestoreFromTensors(source, entries, module);
}

}  // namespace flowtape::io
