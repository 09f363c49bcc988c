#include "models/sphere_model.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "flows/cnf/dynamics.h"
#include "io/json.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/recursive_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flow_matching.h"
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
         kind == "recursive" || kind == "recursive_mobius" ||
         kind == "recursive_mixture" || kind == "rfm";
}

// Values (parameters and buffers) of the model, roughly from above: an
// affine flow holds 54, a neural block about 4 h^2 + 200 h + 1000.
double EstimatedValues(const SphereModelSpec& s) {
  const double affine = 54;
  if (s.kind == "affine") return affine * s.layers;
  if (s.kind == "mixture") return (affine * s.layers + 1) * s.components;
  if (s.kind == "rfm") {  // ConcatSquash layers: (in + 3) out + out
    const double w = static_cast<double>(s.field.width) + 4;
    return s.field.depth * w * w + (8 + 2.0 * s.field.fourier) * w;
  }
  const double h = static_cast<double>(s.hidden);
  const double k = static_cast<double>(s.bins);
  const double chain =
      affine + s.blocks * (4 * h * h + 200 * h + 12 * k * h + 1000 + affine);
  return s.kind == "recursive_mixture" ? (chain + 1) * s.components : chain;
}

// A normalized affine flow on S^2 near the identity (parameter noise 0.1).
manifolds::NormalizedAffineOptions NearIdentityAffine() {
  manifolds::NormalizedAffineOptions options;
  options.n = 3;
  options.noise = 0.1;
  return options;
}

// A chain of normalized affine flows; the first (data side) centred on
// `centre` (a unit vector to 1e-3: InvalidArgument otherwise), the rest near
// the identity.
absl::StatusOr<FlowChain> AffineChain(int layers, const Eigen::Vector3d& centre,
                                      double beta, Rng& rng) {
  if (!centre.allFinite() || std::abs(centre.norm() - 1.0) > 1e-3)
    return absl::InvalidArgumentError(absl::StrCat(
        "sphere model: the centre (init.mean_direction or a random_point) "
        "must be a unit vector, got (",
        centre.x(), ", ", centre.y(), ", ", centre.z(), ")"));
  FlowChain chain;
  FT_ASSIGN_OR_RETURN(auto first,
                      manifolds::NormalizedAffine::Create(
                          Eigen::Matrix3d::Identity(), -beta * centre));
  chain.push_back(first);
  for (int k = 1; k < layers; ++k) {
    FT_ASSIGN_OR_RETURN(auto next, manifolds::NormalizedAffine::Create(
                                       NearIdentityAffine(), rng));
    chain.push_back(next);
  }
  return chain;
}

// Affine (the first, centred on `centre`), then `blocks` x (cylindrical
// coupling / recursive sphere flow + affine): kinds neural, recursive,
// recursive_mobius and each component of recursive_mixture.
absl::StatusOr<FlowChain> BlockChain(const SphereModelSpec& spec,
                                     const Eigen::Vector3d& centre, double beta,
                                     Rng& rng) {
  FT_ASSIGN_OR_RETURN(FlowChain chain, AffineChain(1, centre, beta, rng));
  manifolds::RecursiveSphereFlowOptions rec;
  rec.hidden = {spec.hidden, spec.hidden};
  rec.height_bins = rec.azimuth.bins = spec.bins;
  if (spec.kind == "recursive_mobius") {
    rec.azimuth.kind = manifolds::CircleMapKind::kMobius;
    rec.azimuth.components = 4;
  }
  manifolds::CylindricalCouplingFlowOptions cylindrical;
  cylindrical.components = 8;
  cylindrical.hidden = spec.hidden;
  for (int b = 0; b < spec.blocks; ++b) {
    if (spec.kind == "neural") {
      FT_ASSIGN_OR_RETURN(auto flow, manifolds::CylindricalCouplingFlow::Create(
                                         cylindrical, rng));
      chain.push_back(flow);
    } else {
      FT_ASSIGN_OR_RETURN(auto flow,
                          manifolds::RecursiveSphereFlow::Create(rec, rng));
      chain.push_back(flow);
    }
    FT_ASSIGN_OR_RETURN(auto affine, manifolds::NormalizedAffine::Create(
                                         NearIdentityAffine(), rng));
    chain.push_back(affine);
  }
  return chain;
}

std::string Source(const std::string& path) {
  return absl::StrCat("sphere model file '", path, "'");
}

}  // namespace

absl::Status SphereModelSpec::Validate() const {
  if (!KnownKind(kind))
    return absl::InvalidArgumentError(
        absl::StrCat("kind: want affine, mixture, neural, recursive, "
                     "recursive_mobius, recursive_mixture or rfm, got '",
                     kind, "'"));
  struct Range {
    const char* name;
    int64_t value, hi;
  };
  for (const Range& r :
       {Range{"layers", layers, 4096}, Range{"components", components, 4096},
        Range{"blocks", blocks, 1024}, Range{"hidden", hidden, 4096},
        Range{"bins", bins, 1024}})
    if (r.value < 1 || r.value > r.hi)
      return absl::InvalidArgumentError(absl::StrCat(
          r.name, ": want an integer in [1, ", r.hi, "], got ", r.value));
  if (dtype != kFloat32 && dtype != kFloat64)
    return absl::InvalidArgumentError("dtype: want float32 or float64");
  return kind == "rfm" ? field.Validate() : absl::OkStatus();
}

absl::Status SphereFieldSpec::Validate() const {
  if (width < 1 || width > 4096 || depth < 1 || depth > 16)
    return absl::InvalidArgumentError(
        absl::StrCat("field: want width in [1, 4096] and depth in [1, 16], "
                     "got ",
                     width, " and ", depth));
  if (absl::StatusOr<nn::Activation> a = nn::ParseActivation(activation);
      !a.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("field: ", a.status().message()));
  if (fourier < 0 || fourier > 4096 ||
      !(fourier_scale > 0 && fourier_scale <= 1e4))
    return absl::InvalidArgumentError(absl::StrCat(
        "field: want fourier in [0, 4096] and fourier_scale in (0, 1e4], got ",
        fourier, " and ", fourier_scale));
  if (!(step_size > 0 && step_size <= 1))
    return absl::InvalidArgumentError(
        absl::StrCat("field: step_size must be in (0, 1], got ", step_size));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ManifoldDensity>> MakeSphereModel(
    const SphereModelSpec& spec, const SphereModelInit& init, Rng& rng) {
  FT_RETURN_IF_ERROR(spec.Validate());
  auto base = manifolds::UniformSphere::Create(3).value();
  std::shared_ptr<ManifoldDensity> model;
  if (spec.kind == "affine") {
    FT_ASSIGN_OR_RETURN(
        FlowChain chain,
        AffineChain(spec.layers, init.mean_direction, 0.3, rng));
    model = std::make_shared<manifolds::ManifoldFlowModel>(base, chain);
  } else if (spec.kind == "mixture" || spec.kind == "recursive_mixture") {
    std::vector<std::shared_ptr<ManifoldDensity>> parts;
    for (int j = 0; j < spec.components; ++j) {
      const Eigen::Vector3d centre =
          init.random_point ? init.random_point(rng) : init.mean_direction;
      FlowChain chain;
      if (spec.kind == "mixture") {
        FT_ASSIGN_OR_RETURN(chain, AffineChain(spec.layers, centre, 0.7, rng));
      } else {
        FT_ASSIGN_OR_RETURN(chain, BlockChain(spec, centre, 0.7, rng));
      }
      parts.push_back(
          std::make_shared<manifolds::ManifoldFlowModel>(base, chain));
    }
    FT_ASSIGN_OR_RETURN(model, manifolds::FlowMixture::Create(parts));
  } else if (spec.kind == "rfm") {
    FT_ASSIGN_OR_RETURN(nn::Activation act,
                        nn::ParseActivation(spec.field.activation));
    const std::vector<int64_t> hidden(spec.field.depth, spec.field.width);
    std::shared_ptr<flows::cnf::CnfDynamics> net;
    if (spec.field.fourier > 0) {
      FT_ASSIGN_OR_RETURN(net, manifolds::FourierFeatureField::Create(
                                   3, spec.field.fourier,
                                   spec.field.fourier_scale, hidden, act, rng));
    } else {
      FT_ASSIGN_OR_RETURN(
          net, flows::cnf::ConcatSquashNet::Create(3, hidden, act, rng));
    }
    FT_ASSIGN_OR_RETURN(
        std::shared_ptr<manifolds::SphereCnf> cnf,
        manifolds::SphereCnf::Create(
            std::make_shared<manifolds::TangentProjectedField>(net),
            spec.field.step_size));
    model =
        std::make_shared<manifolds::ManifoldFlowModel>(base, FlowChain{cnf});
  } else {
    FT_ASSIGN_OR_RETURN(FlowChain chain,
                        BlockChain(spec, init.mean_direction, 0.3, rng));
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
  if (spec.kind == "rfm")
    j["field"] = {{"width", spec.field.width},
                  {"depth", spec.field.depth},
                  {"activation", spec.field.activation},
                  {"fourier", spec.field.fourier},
                  {"fourier_scale", spec.field.fourier_scale},
                  {"step_size", spec.field.step_size}};
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
    if (key != "field" &&
        std::find(keys.begin(), keys.end(), key) == keys.end())
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
  // "field": required for kind rfm, refused otherwise.
  if (j.contains("field") != (s.kind == "rfm"))
    return bad(s.kind == "rfm" ? "missing 'field' (kind rfm)"
                               : "unknown key 'field' (only kind rfm has one)");
  if (s.kind == "rfm") {
    const io::Json& f = j["field"];
    if (!f.is_object()) return bad("field: want an object");
    const std::vector<std::string> field_keys = {"width",         "depth",
                                                 "activation",    "fourier",
                                                 "fourier_scale", "step_size"};
    for (const auto& [key, value] : f.items())
      if (std::find(field_keys.begin(), field_keys.end(), key) ==
          field_keys.end())
        return bad(absl::StrCat("field: unknown key '", key, "'"));
    for (const std::string& key : field_keys)
      if (!f.contains(key))
        return bad(absl::StrCat("field: missing '", key, "'"));
    if (!f["width"].is_number_integer() || !f["depth"].is_number_integer() ||
        !f["fourier"].is_number_integer() || !f["activation"].is_string() ||
        !f["fourier_scale"].is_number() || !f["step_size"].is_number())
      return bad(
          "field: want integers width, depth and fourier, a string "
          "activation, numbers fourier_scale and step_size");
    const int64_t width = f["width"].get<int64_t>();
    const int64_t depth = f["depth"].get<int64_t>();
    if (width < 1 || width > 4096 || depth < 1 || depth > 16)
      return bad(
          absl::StrCat("field: want width in [1, 4096] and depth in "
                       "[1, 16], got ",
                       f["width"].dump(), " and ", f["depth"].dump()));
    s.field.width = width;
    s.field.depth = static_cast<int>(depth);
    s.field.activation = f["activation"].get<std::string>();
    const int64_t fourier = f["fourier"].get<int64_t>();
    if (fourier < 0 || fourier > 4096)
      return bad(absl::StrCat("field: want fourier in [0, 4096], got ",
                              f["fourier"].dump()));
    s.field.fourier = fourier;
    s.field.fourier_scale = f["fourier_scale"].get<double>();
    s.field.step_size = f["step_size"].get<double>();
  }
  if (absl::Status v = s.Validate(); !v.ok())
    return bad(std::string(v.message()));
  return s;
}

absl::Status SaveSphereModel(const std::string& path,
                             const SphereModelSpec& spec,
                             const ManifoldDensity& model) {
  const nn::NamedTensors state = ModelState(model);
  FT_RETURN_IF_ERROR(WithSource(Source(path), spec.Validate()));
  FT_RETURN_IF_ERROR(WithSource(
      Source(path),
      CheckDescribedSize(EstimatedValues(spec), ValueCount(state), 20)));
  if (model.dtype() != spec.dtype)
    return absl::InvalidArgumentError(
        absl::StrCat(Source(path), ": the model is ", DTypeName(model.dtype()),
                     " but the spec says ", DTypeName(spec.dtype)));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<ManifoldDensity> fresh,
                      MakeSphereModel(spec, {}, rng));
  FT_RETURN_IF_ERROR(
      CheckBuildsLayout(Source(path), *fresh, state, "the spec builds"));
  return nn::SaveCheckpoint(path, model, nullptr,
                            {{kKey, SphereModelSpecToJson(spec)}});
}

absl::StatusOr<std::shared_ptr<ManifoldDensity>> LoadSphereModel(
    const std::string& path) {
  FT_ASSIGN_OR_RETURN(DescribedFile file,
                      ReadDescribedFile(Source(path), path, kKey));
  absl::StatusOr<SphereModelSpec> spec =
      SphereModelSpecFromJson(file.description);
  if (!spec.ok()) return WithSource(Source(path), spec.status());
  FT_RETURN_IF_ERROR(WithSource(
      Source(path), CheckDescribedSize(EstimatedValues(*spec),
                                       ValueCount(file.tensors), 20)));
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<ManifoldDensity> model,
                      MakeSphereModel(*spec, {}, rng));
  FT_RETURN_IF_ERROR(
      nn::RestoreFromTensors(Source(path), file.tensors, *model));
  return model;
}

}  // namespace flowtape::models
