#include "models/model_state.h"

namespace flowtape::models {

nn::NamedTensors ModelState(const nn::Module& m) {
  nn::NamedTensors all = m.NamedParameters();
  for (const auto& [name, t] : m.NamedBuffers())
    all.emplace_back("buffer/" + name, t);
  return all;
}

double ValueCount(const nn::NamedTensors& tensors) {
  double n = 0;
  for (const auto& [name, t] : tensors) n += static_cast<double>(t.numel());
  return n;
}

bool SameLayout(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.shape() != b[i].second.shape())
      return false;
  return true;
}

}  // namespace flowtape::models
