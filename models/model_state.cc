#include "models/model_state.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

bool SameLayout(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.shape() != b[i].second.shape())
      return false;
  return true;
}

}  // namespace

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

absl::Status CheckBuildsLayout(const std::string& source,
                               const nn::Module& fresh,
                               const nn::NamedTensors& state,
                               const std::string& what) {
  if (SameLayout(ModelState(fresh), state)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      source, ": the model's parameters and buffers are not what ", what));
}

absl::StatusOr<DescribedFile> ReadDescribedFile(const std::string& source,
                                                const std::string& path,
                                                const std::string& key,
                                                const std::string& hint) {
  nn::Metadata meta;
  DescribedFile file;
  FT_ASSIGN_OR_RETURN(file.tensors, nn::ReadTensorFile(path, &meta));
  auto it = meta.find(key);
  if (it == meta.end())
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no model description (metadata '", key, "')", hint));
  file.description = it->second;
  return file;
}

}  // namespace flowtape::models
