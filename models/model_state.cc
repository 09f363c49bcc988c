#include "models/model_state.h"

#include <cmath>

#include "absl/strings/str_cat.h"

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

absl::Status WithSource(const std::string& source, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
}

absl::Status CheckDescribedSize(double estimate, double file_values,
                                int slack_log2) {
  if (estimate <= 16 * file_values + std::ldexp(1.0, slack_log2))
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("model description: describes a model of about ", estimate,
                   " values, more than 16 x the ", file_values,
                   " values the file holds + 2^", slack_log2));
}

}  // namespace flowtape::models
