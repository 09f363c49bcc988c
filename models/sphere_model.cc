#include "models/sphere_model.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "io/json.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/recursive_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flows.h"
#include "models/model_state.h"
#include "nn/checkpoint.h"

namespace flowtape::models {
namespace {

using manifolds::ManifoldDensity;
using FlowChain = std::vector<std::shared_ptr<flows::Flow>>;

constexpr char kKey[] = "sphere_model";
constexpr char kFormat[] = "flowtape.sphere_model";

bool KnownKind(const std::string& kind) {
  return kind == "affine" || kind == "mixture" || kind == "neural" ||
         kind == "recursive" || kind == "recursive_mobius";
}

absl::Status Validate(const SphereModelSpec& s) {
  if (!KnownKind(s.kind))
    return absl::InvalidArgumentError(
        absl::StrCat("kind: want affine, mixture, neural, recursive or "
                     "recursive_mobius, got '",
                     s.kind, "'"));
  struct Range {
    const char* name;
    int64_t value, hi;
  };
  for (const Range& r :
       {Range{"layers", s.layers, 4096},
        Range{"components", s.components, 4096},
        Range{"blocks", s.blocks, 1024}, Range{"hidden", s.hidden, 4096},
        Range{"bins", s.bins, 1024}})
    if (r.value < 1 || r.value > r.hi)
      return absl::InvalidArgumentError(absl::StrCat(
          r.name, ": want an integer in [1, ", r.hi, "], got ", r.value));
  return absl::OkStatus();
}

// Values (parameters and buffers) of the model, roughly from above: an
// affine flow holds 54, a neural block about 4 h^2 + 200 h + 1000.
double EstimatedValues(const SphereModelSpec& s) {
  const double affine = 54;
  if (s.kind == "affine") return affine * s.layers;
  if (s.kind == "mixture") return (affine * s.layers + 1) * s.components;
  const double h = static_cast<double>(s.hidden);
  const double k = static_cast<double>(s.bins);
  return affine + s.blocks * (4 * h * h + 200 * h + 12 * k * h + 1000 + affine);
}

// A chain of normalized affine flows; the first (data side) centred on
// `centre`, the rest near the identity.
FlowChain AffineChain(int layers, const Eigen::Vector3d& centre, double beta,
                      Rng& rng) {
  FlowChain chain;
  chain.push_back(
      std::shared_ptr<flows::Flow>(*manifolds::NormalizedAffine::Create(
          Eigen::Matrix3d::Identity(), -beta * centre)));
  for (int k = 1; k < layers; ++k)
    chain.push_back(std::make_shared<manifolds::NormalizedAffine>(3, rng, 0.1));
  return chain;
}

std::string Source(const std::string& path) {
  return absl::StrCat("sphere model file '", path, "'");
}

absl::Status Prefixed(const std::string& path, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(Source(path), ": ", s.message()));
}

absl::Status CheckSize(const SphereModelSpec& s, double file_values) {
  const double estimate = EstimatedValues(s);
  if (estimate <= 16 * file_values + std::ldexp(1.0, 20))
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("model description: describes a model of about ", estimate,
                   " values, more than 16 x the ", file_values,
                   " values the file holds + 2^20"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<ManifoldDensity>> MakeSphereModel(
    const SphereModelSpec& spec, const SphereModelInit& init, Rng& rng) {
  FT_RETURN_IF_ERROR(Validate(spec));
  auto base = std::make_shared<manifolds::UniformSphere>(3);
  std::shared_ptr<ManifoldDensity> model;
  if (spec.kind == "affine") {
    model = std::make_shared<manifolds::ManifoldFlowModel>(
        base, AffineChain(spec.layers, init.mean_direction, 0.3, rng));
  } else if (spec.kind == "mixture") {
    std::vector<std::shared_ptr<ManifoldDensity>> parts;
    for (int j = 0; j < spec.components; ++j) {
      const Eigen::Vector3d centre =
          init.random_point ? init.random_point(rng) : init.mean_direction;
      parts.push_back(std::make_shared<manifolds::ManifoldFlowModel>(
          base, AffineChain(spec.layers, centre, 0.7, rng)));
    }
    model = std::make_shared<manifolds::FlowMixture>(parts);
  } else {
    FlowChain chain = AffineChain(1, init.mean_direction, 0.3, rng);
    manifolds::RecursiveSphereFlowOptions rec;
    rec.hidden = {spec.hidden, spec.hidden};
    rec.height_bins = rec.azimuth.bins = spec.bins;
    if (spec.kind == "recursive_mobius") {
      rec.azimuth.kind = manifolds::CircleMapKind::kMobius;
      rec.azimuth.components = 4;
    }
    for (int b = 0; b < spec.blocks; ++b) {
      if (spec.kind == "neural") {
        chain.push_back(std::make_shared<manifolds::CylindricalCouplingFlow>(
            8, spec.hidden, rng));
      } else {
        FT_ASSIGN_OR_RETURN(auto flow,
                            manifolds::RecursiveSphereFlow::Create(rec, rng));
        chain.push_back(flow);
      }
      chain.push_back(
          std::make_shared<manifolds::NormalizedAffine>(3, rng, 0.1));
    }
    model = std::make_shared<manifolds::ManifoldFlowModel>(base, chain);
  }
  model->To(spec.dtype);
  return model;
}

std::string SphereModelSpecToJson(const SphereModelSpec& spec) {
  io::Json j = {{"format", kFormat},
                {"version", 1},
                {"kind", spec.kind},
                {"layers", spec.layers},
                {"components", spec.components},
                {"blocks", spec.blocks},
                {"hidden", spec.hidden},
                {"bins", spec.bins},
                {"dtype", DTypeName(spec.dtype)}};
  return j.dump();
}

absl::StatusOr<SphereModelSpec> SphereModelSpecFromJson(
    const std::string& json) {
  FT_ASSIGN_OR_RETURN(io::Json j, io::ParseJson(json, "model description"));
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("model description: ", what));
  };
  if (!j.is_object()) return bad("want an object");
  const std::vector<std::string> keys = {"format", "version",    "kind",
                                         "layers", "components", "blocks",
                                         "hidden", "bins",       "dtype"};
  for (const auto& [key, value] : j.items())
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      return bad(absl::StrCat("unknown key '", key, "'"));
  for (const std::string& key : keys)
    if (!j.contains(key)) return bad(absl::StrCat("missing '", key, "'"));
  if (j["format"] != kFormat)
    return bad(absl::StrCat("format: want \"", kFormat, "\""));
  if (j["version"] != 1) return bad("version: want 1");
  if (!j["kind"].is_string()) return bad("kind: want a string");
  if (!j["dtype"].is_string()) return bad("dtype: want a string");
  SphereModelSpec s;
  s.kind = j["kind"].get<std::string>();
  auto integer = [&](const char* key, int64_t hi, int64_t* out) {
    const io::Json& v = j[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > hi)
      return bad(absl::StrCat(key, ": want an integer in [1, ", hi, "], got ",
                              v.dump()));
    *out = v.get<int64_t>();
    return absl::OkStatus();
  };
  int64_t layers, components, blocks;
  FT_RETURN_IF_ERROR(integer("layers", 4096, &layers));
  FT_RETURN_IF_ERROR(integer("components", 4096, &components));
  FT_RETURN_IF_ERROR(integer("blocks", 1024, &blocks));
  FT_RETURN_IF_ERROR(integer("hidden", 4096, &s.hidden));
  FT_RETURN_IF_ERROR(integer("bins", 1024, &s.bins));
  s.layers = static_cast<int>(layers);
  s.components = static_cast<int>(components);
  s.blocks = static_cast<int>(blocks);
  absl::StatusOr<DType> dtype = ParseDType(j["dtype"].get<std::string>());
  if (!dtype.ok())
    return bad(absl::StrCat("dtype: ", dtype.status().message()));
  s.dtype = *dtype;
  if (absl::Status v = Validate(s); !v.ok())
    return bad(std::string(v.message()));
  return s;
}

absl::Status SaveSphereModel(const std::string& path,
                             const SphereModelSpec& spec,
                             const ManifoldDensity& model) {
  const nn::NamedTensors state = ModelState(model);
  FT_RETURN_IF_ERROR(Prefixed(path, Validate(spec)));
  FT_RETURN_IF_ERROR(Prefixed(path, CheckSize(spec, ValueCount(state))));
  if (model.dtype() != spec.dtype)
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path), ": the model is ", DTypeName(model.dtype()),
                     " but the spec says ", DTypeName(spec.dtype)));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<ManifoldDensity> fresh,
                      MakeSphereModel(spec, {}, rng));
  const nn::NamedTensors want = ModelState(*fresh);
  if (!SameLayout(want, state))
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path),
                     ": the model's parameters and buffers are not what "
                     "the spec builds"));
  return nn::SaveCheckpoint(path, model, nullptr,
                            {{kKey, SphereModelSpecToJson(spec)}});
}

absl::StatusOr<std::shared_ptr<ManifoldDensity>> LoadSphereModel(
    const std::string& path) {
  nn::Metadata meta;
  FT_ASSIGN_OR_RETURN(nn::NamedTensors tensors,
                      nn::ReadTensorFile(path, &meta));
  auto it = meta.find(kKey);
  if (it == meta.end())
    return absl::InvalidArgumentError(absl::StrCat(
        Source(path), ": no model description (metadata '", kKey, "')"));
  absl::StatusOr<SphereModelSpec> spec = SphereModelSpecFromJson(it->second);
  if (!spec.ok()) return Prefixed(path, spec.status());
  FT_RETURN_IF_ERROR(Prefixed(path, CheckSize(*spec, ValueCount(tensors))));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<ManifoldDensity> model,
                      MakeSphereModel(*spec, {}, rng));
  FT_RETURN_IF_ERROR(nn::RestoreFromTensors(Source(path), tensors, *model));
  return model;
}

}  // namespace flowtape::models
