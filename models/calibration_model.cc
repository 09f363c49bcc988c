#include "models/calibration_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "io/json.h"
#include "manifolds/calibration.h"
#include "models/model_state.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

constexpr char kKey[] = "calibration_model";
constexpr char kFormat[] = "flowtape.calibration_model";

// Values (parameters and buffers), from above: the MLP's weights and biases,
// and at most 3 K^2 + 4 K + 8 for a map.
double EstimatedValues(const CalibrationModelSpec& s) {
  double values = 0;
  for (size_t i = 0; i + 1 < s.sizes.size(); ++i)
    values += (static_cast<double>(s.sizes[i]) + 1) * s.sizes[i + 1];
  const double k = static_cast<double>(s.sizes.back());
  return values + 3 * k * k + 4 * k + 8;
}

std::string Source(const std::string& path) {
  return absl::StrCat("calibration model file '", path, "'");
}

}  // namespace

absl::Status CalibrationModelSpec::Validate() const {
  const CalibrationModelSpec& s = *this;
  if (s.map != "none" && s.map != "temperature" && s.map != "fcal" &&
      s.map != "generalized")
    return absl::InvalidArgumentError(absl::StrCat(
        "map: want none, temperature, fcal or generalized, got '", s.map, "'"));
  if (s.sizes.size() < 2 || s.sizes.size() > 16)
    return absl::InvalidArgumentError(
        absl::StrCat("sizes: want 2..16 layer sizes, got ", s.sizes.size()));
  for (size_t i = 0; i < s.sizes.size(); ++i)
    if (s.sizes[i] < 1 || s.sizes[i] > 65536)
      return absl::InvalidArgumentError(absl::StrCat(
          "sizes[", i, "]: want an integer in [1, 65536], got ", s.sizes[i]));
  if (s.sizes.back() < 2 || s.sizes.back() > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        "sizes: want K in [2, 4096] classes last, got ", s.sizes.back()));
  if (absl::Status a = nn::ParseActivation(s.activation).status(); !a.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("activation: ", a.message()));
  if (s.dtype != kFloat32 && s.dtype != kFloat64)
    return absl::InvalidArgumentError("dtype: want float32 or float64");
  return absl::OkStatus();
}

CalibratedClassifier::CalibratedClassifier(std::shared_ptr<nn::MLP> classifier,
                                           std::shared_ptr<flows::Flow> map)
    : classifier_(RegisterModule("classifier", std::move(classifier))) {
  if (map) map_ = RegisterModule("map", std::move(map));
}

flows::FlowResult CalibratedClassifier::Pass(const Tensor& x) const {
  Tensor p =
      Cast(Softmax((*classifier_)(Cast(x, classifier_dtype())), 1), kFloat64);
  return map_ ? map_->Forward(p) : flows::FlowResult(p, Tensor());
}

Tensor CalibratedClassifier::Probabilities(const Tensor& x) const {
  return Pass(x).value;
}

absl::StatusOr<Tensor> CalibratedClassifier::TryProbabilities(
    const Tensor& x) const {
  flows::FlowResult r = Pass(x);
  if (!r.status.ok())
    return absl::Status(r.status.code(),
                        absl::StrCat("calibration map ", map_->name(), ": ",
                                     r.status.message()));
  return r.value;
}

Tensor CalibratedClassifier::LogProbabilities(const Tensor& x) const {
  return Log(Probabilities(x));
}

absl::StatusOr<std::shared_ptr<CalibratedClassifier>> MakeCalibrationModel(
    const CalibrationModelSpec& spec, Rng& rng) {
  FT_RETURN_IF_ERROR(spec.Validate());
  FT_ASSIGN_OR_RETURN(nn::Activation act, nn::ParseActivation(spec.activation));
  FT_ASSIGN_OR_RETURN(std::shared_ptr<nn::MLP> classifier,
                      nn::MLP::Create(spec.sizes, act, rng));
  classifier->To(spec.dtype);
  const int64_t k = spec.sizes.back();
  std::shared_ptr<flows::Flow> map;
  if (spec.map == "temperature" || spec.map == "fcal") {
    manifolds::SimplexCalibrationOptions options;
    options.n = k;
    options.temperature_only = spec.map == "temperature";
    FT_ASSIGN_OR_RETURN(map, manifolds::SimplexCalibration::Create(options));
  } else if (spec.map == "generalized") {
    manifolds::GeneralizedCalibrationOptions options;
    options.n = k;
    FT_ASSIGN_OR_RETURN(
        map, manifolds::GeneralizedCalibration::Create(options, rng));
  }
  return std::make_shared<CalibratedClassifier>(std::move(classifier),
                                                std::move(map));
}

std::string CalibrationModelSpecToJson(const CalibrationModelSpec& spec) {
  io::Json j = {{"format", kFormat},
                {"version", 1},
                {"map", spec.map},
                {"sizes", spec.sizes},
                {"activation", spec.activation},
                {"dtype", DTypeName(spec.dtype)}};
  return j.dump();
}

absl::StatusOr<CalibrationModelSpec> CalibrationModelSpecFromJson(
    const std::string& json) {
  FT_ASSIGN_OR_RETURN(io::Json j, io::ParseJson(json, "model description"));
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("model description: ", what));
  };
  if (!j.is_object()) return bad("want an object");
  const std::vector<std::string> keys = {"format", "version",    "map",
                                         "sizes",  "activation", "dtype"};
  for (const auto& [key, value] : j.items())
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      return bad(absl::StrCat("unknown key '", key, "'"));
  for (const std::string& key : keys)
    if (!j.contains(key)) return bad(absl::StrCat("missing '", key, "'"));
  if (j["format"] != kFormat)
    return bad(absl::StrCat("format: want \"", kFormat, "\""));
  if (j["version"] != 1) return bad("version: want 1");
  for (const char* key : {"map", "activation", "dtype"})
    if (!j[key].is_string()) return bad(absl::StrCat(key, ": want a string"));
  const io::Json& sizes = j["sizes"];
  if (!sizes.is_array() || sizes.size() < 2 || sizes.size() > 16)
    return bad(absl::StrCat("sizes: want an array of 2..16 integers, got ",
                            sizes.dump()));
  CalibrationModelSpec s;
  s.map = j["map"].get<std::string>();
  s.activation = j["activation"].get<std::string>();
  s.sizes.clear();
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!sizes[i].is_number_integer())
      return bad(absl::StrCat("sizes[", i, "]: want an integer, got ",
                              sizes[i].dump()));
    s.sizes.push_back(sizes[i].get<int64_t>());
  }
  absl::StatusOr<DType> dtype = ParseDType(j["dtype"].get<std::string>());
  if (!dtype.ok())
    return bad(absl::StrCat("dtype: ", dtype.status().message()));
  s.dtype = *dtype;
  if (absl::Status v = s.Validate(); !v.ok())
    return bad(std::string(v.message()));
  return s;
}

absl::Status SaveCalibrationModel(const std::string& path,
                                  const CalibrationModelSpec& spec,
                                  const CalibratedClassifier& model) {
  const nn::NamedTensors state = ModelState(model);
  FT_RETURN_IF_ERROR(WithSource(Source(path), spec.Validate()));
  FT_RETURN_IF_ERROR(WithSource(
      Source(path),
      CheckDescribedSize(EstimatedValues(spec), ValueCount(state), 20)));
  if (model.classifier_dtype() != spec.dtype)
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path), ": the classifier is ",
                     DTypeName(model.classifier_dtype()), " but the spec says ",
                     DTypeName(spec.dtype)));
  if (const auto* simplex =
          dynamic_cast<const manifolds::SimplexCalibration*>(model.map());
      simplex != nullptr && !(simplex->a() > 0))
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path), ": the map's a = ", simplex->a(),
                     " is not > 0 (a model file keeps a > 0 only)"));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<CalibratedClassifier> fresh,
                      MakeCalibrationModel(spec, rng));
  FT_RETURN_IF_ERROR(CheckBuildsLayout(
      Source(path), *fresh, state,
      absl::StrCat("the spec builds (map '", spec.map, "', sizes and dtype)")));
  return nn::SaveCheckpoint(path, model, nullptr,
                            {{kKey, CalibrationModelSpecToJson(spec)}});
}

absl::StatusOr<std::shared_ptr<CalibratedClassifier>> LoadCalibrationModel(
    const std::string& path) {
  FT_ASSIGN_OR_RETURN(DescribedFile file,
                      ReadDescribedFile(Source(path), path, kKey));
  absl::StatusOr<CalibrationModelSpec> spec =
      CalibrationModelSpecFromJson(file.description);
  if (!spec.ok()) return WithSource(Source(path), spec.status());
  FT_RETURN_IF_ERROR(WithSource(
      Source(path), CheckDescribedSize(EstimatedValues(*spec),
                                       ValueCount(file.tensors), 20)));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<CalibratedClassifier> model,
                      MakeCalibrationModel(*spec, rng));
  FT_RETURN_IF_ERROR(
      nn::RestoreFromTensors(Source(path), file.tensors, *model));
  return model;
}

}  // namespace flowtape::models
