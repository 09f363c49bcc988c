#include "models/model_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/status_macros.h"
#include "io/json.h"

namespace flowtape::models {
namespace {

using io::Json;

constexpr int kFormatVersion = 1;

// "<field>: want <want>, got <the value, or its type for an object>".
absl::Status Bad(const std::string& field, const std::string& want,
                 const Json& got) {
  std::string shown = got.is_object() ? "an object" : got.dump();
  if (shown.size() > 64) shown = shown.substr(0, 60) + " ...";
  return absl::InvalidArgumentError(absl::StrCat(
      "model description: ", field, ": want ", want, ", got ", shown));
}

// Unknown keys of `obj` (at `where`) are errors.
absl::Status OnlyKeys(const Json& obj, const std::string& where,
                      const std::set<std::string>& known) {
  for (const auto& [key, value] : obj.items())
    if (known.count(key) == 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "model description: ", where, key,
          ": unknown field (known: ", absl::StrJoin(known, ", "), ")"));
  return absl::OkStatus();
}

absl::Status Integer(const Json& j, const std::string& field, int64_t lo,
                     int64_t hi, int64_t* out) {
  const std::string want = absl::StrCat("an integer in [", lo, ", ", hi, "]");
  if (!j.is_number_integer()) return Bad(field, want, j);
  if (j.is_number_unsigned()) {
    const uint64_t v = j.get<uint64_t>();
    if (v > static_cast<uint64_t>(hi)) return Bad(field, want, j);
    *out = static_cast<int64_t>(v);
  } else {
    *out = j.get<int64_t>();
  }
  if (*out < lo || *out > hi) return Bad(field, want, j);
  return absl::OkStatus();
}

absl::Status SizeList(const Json& j, const std::string& field, size_t min_len,
                      size_t max_len, int64_t hi, std::vector<int64_t>* out) {
  if (!j.is_array() || j.size() < min_len || j.size() > max_len)
    return Bad(
        field,
        absl::StrCat("an array of ", min_len, "..", max_len, " integers"), j);
  out->clear();
  for (size_t i = 0; i < j.size(); ++i) {
    int64_t v;
    FT_RETURN_IF_ERROR(
        Integer(j[i], absl::StrCat(field, "[", i, "]"), 1, hi, &v));
    out->push_back(v);
  }
  return absl::OkStatus();
}

absl::Status ReadConfig(const Json& c, ModelConfig* config) {
  if (!c.is_object()) return Bad("config", "an object", c);
  FT_RETURN_IF_ERROR(
      OnlyKeys(c, "config.",
               {"event", "layers", "hidden", "context_dim", "levels", "depth",
                "channels", "bins", "bound", "train_t", "components", "base"}));
  auto has = [&](const char* key) { return c.contains(key); };
  if (has("event")) {
    std::vector<int64_t> dims;
    FT_RETURN_IF_ERROR(
        SizeList(c["event"], "config.event", 1, 3, 65536, &dims));
    if (dims.size() == 2)
      return Bad("config.event", "[D] or [C, H, W]", Json(dims));
    int64_t numel = 1;
    for (int64_t d : dims) numel *= d;
    if (numel > (int64_t{1} << 24))
      return Bad("config.event", "at most 2^24 values", Json(numel));
    config->event = Shape(dims);
  }
  struct IntField {
    const char* key;
    int64_t lo, hi;
    std::function<void(int64_t)> set;
  };
  const IntField ints[] = {
      {"layers", 1, 4096, [&](int64_t v) { config->layers = int(v); }},
      {"context_dim", 0, 65536, [&](int64_t v) { config->context_dim = v; }},
      {"levels", 1, 8, [&](int64_t v) { config->levels = int(v); }},
      {"depth", 1, 1024, [&](int64_t v) { config->depth = int(v); }},
      {"channels", 1, 16384, [&](int64_t v) { config->channels = v; }},
      {"bins", 1, 1024, [&](int64_t v) { config->bins = v; }},
      {"components", 1, 4096, [&](int64_t v) { config->components = v; }},
  };
  for (const IntField& f : ints) {
    if (!has(f.key)) continue;
    int64_t v;
    FT_RETURN_IF_ERROR(
        Integer(c[f.key], absl::StrCat("config.", f.key), f.lo, f.hi, &v));
    f.set(v);
  }
  if (has("hidden")) {
    FT_RETURN_IF_ERROR(
        SizeList(c["hidden"], "config.hidden", 1, 16, 65536, &config->hidden));
  }
  if (has("bound")) {
    const Json& b = c["bound"];
    if (!b.is_number() || !(b.get<double>() > 0) || b.get<double>() > 1e6)
      return Bad("config.bound", "a number in (0, 1e6]", b);
    config->bound = b.get<double>();
  }
  if (has("train_t")) {
    if (!c["train_t"].is_boolean())
      return Bad("config.train_t", "true or false", c["train_t"]);
    config->train_t = c["train_t"].get<bool>();
  }
  if (has("base")) {
    const Json& b = c["base"];
    if (b != "family" && b != "gmm" && b != "gmm_full" && b != "factorized" &&
        b != "resampled")
      return Bad("config.base",
                 "\"family\", \"gmm\", \"gmm_full\", \"factorized\" or "
                 "\"resampled\"",
                 b);
    config->base = b == "gmm"          ? BaseChoice::kGaussianMixture
                   : b == "gmm_full"   ? BaseChoice::kGaussianMixtureFull
                   : b == "factorized" ? BaseChoice::kFactorizedMixture
                   : b == "resampled"  ? BaseChoice::kResampled
                                       : BaseChoice::kFamily;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelSpec::Validate() const {
  auto bad = [](const std::string& field, const std::string& want,
                const std::string& got) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": want ", want, ", got ", got));
  };
  auto range = [&](const std::string& field, int64_t v, int64_t lo,
                   int64_t hi) {
    return v >= lo && v <= hi
               ? absl::OkStatus()
               : bad(field, absl::StrCat("an integer in [", lo, ", ", hi, "]"),
                     absl::StrCat(v));
  };
  const std::vector<std::string> names = ZooNames();
  if (std::find(names.begin(), names.end(), family) == names.end())
    return absl::InvalidArgumentError(
        absl::StrCat("family: unknown family \"", family,
                     "\"; the catalogue has ", absl::StrJoin(names, ", ")));
  if (dtype != kFloat32 && dtype != kFloat64)
    return absl::InvalidArgumentError("dtype: want float32 or float64");
  const ModelConfig& c = config;
  if (c.event.rank() != 1 && c.event.rank() != 3)
    return bad("config.event", "[D] or [C, H, W]", c.event.ToString());
  int64_t numel = 1;
  for (int i = 0; i < c.event.rank(); ++i) {
    FT_RETURN_IF_ERROR(
        range(absl::StrCat("config.event[", i, "]"), c.event[i], 1, 65536));
    numel *= c.event[i];
  }
  if (numel > (int64_t{1} << 24))
    return bad("config.event", "at most 2^24 values", absl::StrCat(numel));
  FT_RETURN_IF_ERROR(range("config.layers", c.layers, 1, 4096));
  if (c.hidden.empty() || c.hidden.size() > 16)
    return bad("config.hidden", "an array of 1..16 integers",
               absl::StrCat(c.hidden.size(), " sizes"));
  for (size_t i = 0; i < c.hidden.size(); ++i)
    FT_RETURN_IF_ERROR(
        range(absl::StrCat("config.hidden[", i, "]"), c.hidden[i], 1, 65536));
  FT_RETURN_IF_ERROR(range("config.context_dim", c.context_dim, 0, 65536));
  FT_RETURN_IF_ERROR(range("config.levels", c.levels, 1, 8));
  FT_RETURN_IF_ERROR(range("config.depth", c.depth, 1, 1024));
  FT_RETURN_IF_ERROR(range("config.channels", c.channels, 1, 16384));
  FT_RETURN_IF_ERROR(range("config.bins", c.bins, 1, 1024));
  FT_RETURN_IF_ERROR(range("config.components", c.components, 1, 4096));
  if (!(c.bound > 0 && c.bound <= 1e6))
    return bad("config.bound", "a number in (0, 1e6]", absl::StrCat(c.bound));
  return absl::OkStatus();
}

std::string ModelSpecToJson(const ModelSpec& spec) {
  const ModelConfig& c = spec.config;
  Json config = {{"event", c.event.dims()}, {"layers", c.layers},
                 {"hidden", c.hidden},      {"context_dim", c.context_dim},
                 {"levels", c.levels},      {"depth", c.depth},
                 {"channels", c.channels},  {"bins", c.bins},
                 {"bound", c.bound},        {"train_t", c.train_t}};
  // Written only when they differ from their defaults, so files of models
  // that do not use them stay readable by readers that predate them.
  if (c.components != ModelConfig{}.components)
    config["components"] = c.components;
  if (c.base == BaseChoice::kGaussianMixture) config["base"] = "gmm";
  if (c.base == BaseChoice::kGaussianMixtureFull) config["base"] = "gmm_full";
  if (c.base == BaseChoice::kFactorizedMixture) config["base"] = "factorized";
  if (c.base == BaseChoice::kResampled) config["base"] = "resampled";
  Json j = {{"format", "flowtape.model"},
            {"version", kFormatVersion},
            {"family", spec.family},
            {"dtype", DTypeName(spec.dtype)},
            {"config", config}};
  return j.dump();
}

absl::StatusOr<ModelSpec> ModelSpecFromJson(absl::string_view text) {
  FT_ASSIGN_OR_RETURN(const Json j, io::ParseJson(text, "model description"));
  if (!j.is_object()) return Bad("(top level)", "an object", j);
  FT_RETURN_IF_ERROR(
      OnlyKeys(j, "", {"format", "version", "family", "dtype", "config"}));
  for (const char* key : {"format", "version", "family", "dtype", "config"})
    if (!j.contains(key))
      return absl::InvalidArgumentError(
          absl::StrCat("model description: ", key, ": missing"));
  if (j["format"] != "flowtape.model")
    return Bad("format", "\"flowtape.model\"", j["format"]);
  if (j["version"] != kFormatVersion)
    return Bad("version",
               absl::StrCat(kFormatVersion,
                            " (newer files need a "
                            "newer flowtape)"),
               j["version"]);
  ModelSpec spec;
  if (!j["family"].is_string()) return Bad("family", "a string", j["family"]);
  spec.family = j["family"].get<std::string>();
  const std::vector<std::string> names = ZooNames();
  if (std::find(names.begin(), names.end(), spec.family) == names.end())
    return absl::InvalidArgumentError(absl::StrCat(
        "model description: family: unknown family \"", spec.family,
        "\"; the catalogue has ", absl::StrJoin(names, ", ")));
  const Json& dtype = j["dtype"];
  if (dtype != "float32" && dtype != "float64")
    return Bad("dtype", "\"float32\" or \"float64\"", dtype);
  spec.dtype = dtype == "float32" ? kFloat32 : kFloat64;
  FT_RETURN_IF_ERROR(ReadConfig(j["config"], &spec.config));
  if (absl::Status s = spec.Validate(); !s.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("model description: ", s.message()));
  return spec;
}

bool operator==(const ModelSpec& a, const ModelSpec& b) {
  const ModelConfig &x = a.config, &y = b.config;
  return a.family == b.family && a.dtype == b.dtype && x.event == y.event &&
         x.layers == y.layers && x.hidden == y.hidden &&
         x.context_dim == y.context_dim && x.levels == y.levels &&
         x.depth == y.depth && x.channels == y.channels && x.bins == y.bins &&
         x.bound == y.bound && x.train_t == y.train_t &&
         x.components == y.components && x.base == y.base;
}

}  // namespace flowtape::models
