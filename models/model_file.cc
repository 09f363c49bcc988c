#include "models/model_file.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "models/model_state.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

constexpr char kModelKey[] = "model";

std::string Source(const std::string& path) {
  return absl::StrCat("model file '", path, "'");
}

// The size estimate of model_file.h, in doubles (no overflow: every field is
// capped by model_spec.h).
double EstimatedValues(const ModelConfig& c) {
  const double e = static_cast<double>(c.event.numel());
  const double steps =
      std::max<double>(c.layers, static_cast<double>(c.levels) * c.depth);
  double width = static_cast<double>(c.channels) * c.channels;
  if (!c.hidden.empty()) {
    width += (e / 2 + c.context_dim) * c.hidden.front();
    for (size_t i = 0; i + 1 < c.hidden.size(); ++i)
      width += static_cast<double>(c.hidden[i]) * c.hidden[i + 1];
    width += c.hidden.back() * (e / 2) * (3.0 * c.bins + 1);
  }
  const double k = static_cast<double>(c.components);
  const double lower =
      c.base == BaseChoice::kGaussianMixtureFull ? k * e * (e - 1) / 2 : 0;
  return steps * (width + 2 * k * e) + k * (2 * e + 1) + lower;
}

}  // namespace

absl::Status CheckModelSize(const ModelConfig& c, double file_values) {
  const double estimate = EstimatedValues(c);
  const double limit = 16 * file_values + std::ldexp(1.0, 26);
  if (estimate <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "model description: config: describes a model of about ", estimate,
      " values, more than 16 x the ", file_values,
      " values the file holds + 2^26 (see models/model_file.h; a field the "
      "family ignores may be set too high)"));
}

absl::Status SaveModel(const std::string& path, const ModelSpec& spec,
                       const flows::FlowModel& model) {
  FT_RETURN_IF_ERROR(WithSource(Source(path), spec.Validate()));
  const nn::NamedTensors state = ModelState(model);
  FT_RETURN_IF_ERROR(
      WithSource(Source(path), CheckModelSize(spec.config, ValueCount(state))));
  if (model.dtype() != spec.dtype)
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path), ": the model is ", DTypeName(model.dtype()),
                     " but the spec says ", DTypeName(spec.dtype)));
  Rng rng(0);
  absl::StatusOr<std::shared_ptr<flows::FlowModel>> fresh =
      MakeModel(spec.family, spec.config, rng);
  if (!fresh.ok()) return WithSource(Source(path), fresh.status());
  FT_RETURN_IF_ERROR(CheckBuildsLayout(
      Source(path), **fresh, state,
      absl::StrCat("family '", spec.family, "' builds from the given config")));
  return nn::SaveCheckpoint(path, model, nullptr,
                            {{kModelKey, ModelSpecToJson(spec)}});
}

namespace {

absl::StatusOr<ModelSpec> SpecOf(const std::string& path,
                                 const DescribedFile& file) {
  absl::StatusOr<ModelSpec> spec = ModelSpecFromJson(file.description);
  if (!spec.ok()) return WithSource(Source(path), spec.status());
  FT_RETURN_IF_ERROR(WithSource(
      Source(path), CheckModelSize(spec->config, ValueCount(file.tensors))));
  return spec;
}

absl::StatusOr<DescribedFile> ReadModelFile(const std::string& path) {
  return ReadDescribedFile(
      Source(path), path, kModelKey,
      ": a plain checkpoint; build the model and use LoadCheckpoint");
}

}  // namespace

absl::StatusOr<ModelSpec> ReadModelSpec(const std::string& path) {
  FT_ASSIGN_OR_RETURN(DescribedFile file, ReadModelFile(path));
  return SpecOf(path, file);
}

absl::StatusOr<std::shared_ptr<flows::FlowModel>> LoadModel(
    const std::string& path) {
  FT_ASSIGN_OR_RETURN(DescribedFile file, ReadModelFile(path));
  FT_ASSIGN_OR_RETURN(ModelSpec spec, SpecOf(path, file));
  Rng rng(0);
  absl::StatusOr<std::shared_ptr<flows::FlowModel>> model =
      MakeModel(spec.family, spec.config, rng);
  if (!model.ok()) return WithSource(Source(path), model.status());
  (*model)->To(spec.dtype);
  UpgradeFoldedReversals(spec.family, spec.config, &file.tensors);
  FT_RETURN_IF_ERROR(
      nn::RestoreFromTensors(Source(path), file.tensors, **model));
  return model;
}

}  // namespace flowtape::models
