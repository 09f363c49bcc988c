#include "compression/idf.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "nn/checkpoint.h"

namespace flowtape::compression {
namespace {

constexpr char kIdfKey[] = "idf";

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("idf options: ", field, " ", why));
}

}  // namespace

Tensor RoundStraightThrough(const Tensor& x) {
  return MapUnary(
      "round_straight_through", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.needs_grad(0)) gin[0] = g;
      },
      [](auto v) { return std::round(v); });
}

absl::Status IdfOptions::Validate() const {
  if (height < 1 || height > 256) return Bad("height", "must be in 1..256");
  if (width < 1 || width > 256) return Bad("width", "must be in 1..256");
  if (height * width < 2) return Bad("height * width", "must be at least 2");
  if (couplings < 1 || couplings > 64)
    return Bad("couplings", "must be in 1..64");
  if (hidden.empty() || hidden.size() > 4) {
    return Bad("hidden", "must have 1..4 layers");
  }
  for (int64_t h : hidden) {
    if (h < 1 || h > 4096) return Bad("hidden", "sizes must be in 1..4096");
  }
  if (components < 1 || components > 16) {
    return Bad("components", "must be in 1..16");
  }
  return absl::OkStatus();
}

int64_t IdfOptions::NumParameters() const {
  const int64_t d = dims();
  int64_t total = 3 * d * components;
  for (int k = 0; k < couplings; ++k) {
    const int64_t a = (k % 2 == 0) ? (d + 1) / 2 : d / 2;
    int64_t in = a;
    for (int64_t h : hidden) {
      total += (in + 1) * h;
      in = h;
    }
    total += (in + 1) * (d - a);
  }
  return total;
}

io::Json IdfOptions::ToJson() const {
  return io::Json{{"height", height},
                  {"width", width},
                  {"couplings", couplings},
                  {"hidden", hidden},
                  {"components", components}};
}

absl::StatusOr<IdfOptions> IdfOptions::FromJson(const io::Json& j) {
  if (!j.is_object()) return Bad("description", "must be a JSON object");
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k != "height" && k != "width" && k != "couplings" && k != "hidden" &&
        k != "components") {
      return Bad(k, "is not an option");
    }
  }
  // Integers in -2^30..2^30 (fit an int; Validate checks the real ranges).
  auto integer = [&](const io::Json& v, const std::string& name,
                     int64_t* out) -> absl::Status {
    const bool small = v.is_number_unsigned()
                           ? v.get<uint64_t>() <= (uint64_t{1} << 30)
                           : v.is_number_integer() &&
                                 v.get<int64_t>() >= -(int64_t{1} << 30) &&
                                 v.get<int64_t>() <= (int64_t{1} << 30);
    if (!small) return Bad(name, "must be an integer in range");
    *out = v.get<int64_t>();
    return absl::OkStatus();
  };
  IdfOptions o;
  int64_t v = 0;
  for (const std::string name :
       {"height", "width", "couplings", "components"}) {
    if (!j.contains(name)) return Bad(name, "is missing");
    FT_RETURN_IF_ERROR(integer(j.at(name), name, &v));
    if (name == "height") o.height = v;
    if (name == "width") o.width = v;
    if (name == "couplings") o.couplings = static_cast<int>(v);
    if (name == "components") o.components = static_cast<int>(v);
  }
  if (!j.contains("hidden") || !j.at("hidden").is_array()) {
    return Bad("hidden", "must be an array of integers");
  }
  o.hidden.clear();
  if (j.at("hidden").size() > 4) {
    return Bad("hidden", "must have 1..4 layers");
  }
  for (const io::Json& h : j.at("hidden")) {
    FT_RETURN_IF_ERROR(integer(h, "hidden", &v));
    o.hidden.push_back(v);
  }
  FT_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>>
IntegerDiscreteFlow::Create(const IdfOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<IntegerDiscreteFlow>(
      new IntegerDiscreteFlow(options, rng));
}

IntegerDiscreteFlow::IntegerDiscreteFlow(const IdfOptions& options, Rng& rng)
    : options_(options) {
  const int64_t d = options.dims();
  for (int p = 0; p < 2; ++p) {
    split_[p].assign(2, {});
    for (int64_t i = 0; i < options.height; ++i) {
      for (int64_t j = 0; j < options.width; ++j) {
        split_[p][(i + j) % 2 == p ? 0 : 1].push_back(i * options.width + j);
      }
    }
    unsplit_[p].assign(d, 0);
    int64_t pos = 0;
    for (int h = 0; h < 2; ++h) {
      for (int64_t idx : split_[p][h]) unsplit_[p][idx] = pos++;
    }
  }
  for (int k = 0; k < options.couplings; ++k) {
    std::vector<int64_t> sizes = {static_cast<int64_t>(conditioning(k).size())};
    sizes.insert(sizes.end(), options.hidden.begin(), options.hidden.end());
    sizes.push_back(static_cast<int64_t>(updated(k).size()));
    nets_.push_back(RegisterModule(
        absl::StrCat("coupling", k),
        std::make_shared<nn::MLP>(sizes, nn::Activation::kRelu, rng,
                                  /*zero_last=*/true)));
  }
  const int c = options.components;
  std::vector<double> means(d * c),
      scales(d * c, std::log(8.0) / kIdfLogScaleUnit);
  for (int64_t i = 0; i < d; ++i) {
    for (int j = 0; j < c; ++j) {
      means[i * c + j] = (c == 1 ? 127.5 : j * 255.0 / (c - 1)) / kIdfMeanUnit;
    }
  }
  logits_ = RegisterParameter("prior.logits", Tensor::Zeros({d, c}));
  means_ = RegisterParameter("prior.means", Tensor::FromVector({d, c}, means));
  log_scales_ =
      RegisterParameter("prior.log_scales", Tensor::FromVector({d, c}, scales));
}

Tensor IntegerDiscreteFlow::Couple(const Tensor& x, int k, double sign) const {
  const int p = k % 2;
  Tensor xa = IndexSelect(x, 1, split_[p][0]);
  Tensor xb = IndexSelect(x, 1, split_[p][1]);
  Tensor t = (*nets_[k])((xa - kIdfInputCenter) * kIdfInputScale);
  Tensor shift = Clamp(RoundStraightThrough(t), -kIdfMaxShift, kIdfMaxShift);
  Tensor yb = sign > 0 ? xb + shift : xb - shift;
  return IndexSelect(Concat({xa, yb}, 1), 1, unsplit_[p]);
}

Tensor IntegerDiscreteFlow::Forward(const Tensor& x) const {
  const int64_t d = options_.dims();
  FT_CHECK(x.numel() % d == 0 && x.rank() >= 2, "idf: input ",
           x.shape().ToString(), " for D = ", d);
  Tensor z = Reshape(x, {-1, d});
  for (int k = 0; k < options_.couplings; ++k) z = Couple(z, k, +1.0);
  return z;
}

Tensor IntegerDiscreteFlow::Inverse(const Tensor& z) const {
  const int64_t d = options_.dims();
  FT_CHECK(z.rank() == 2 && z.dim(1) == d, "idf inverse: input ",
           z.shape().ToString(), " for D = ", d);
  Tensor x = z;
  for (int k = options_.couplings - 1; k >= 0; --k) x = Couple(x, k, -1.0);
  return x;
}

Tensor IntegerDiscreteFlow::LatentLogProb(const Tensor& z) const {
  const int64_t d = options_.dims();
  FT_CHECK(z.rank() == 2 && z.dim(1) == d, "idf prior: input ",
           z.shape().ToString(), " for D = ", d);
  Tensor centred = Reshape(z, {-1, d, 1}) - means_ * kIdfMeanUnit;  // [N,D,K]
  Tensor inv_s = Exp(log_scales_ * -kIdfLogScaleUnit);              // [D, K]
  Tensor hi = (centred + 0.5) * inv_s;
  Tensor lo = (centred - 0.5) * inv_s;
  Tensor log_bin = LogSigmoid(hi) + LogSigmoid(-lo) + Log(-Expm1(-inv_s));
  Tensor log_p = LogSumExp(log_bin + LogSoftmax(logits_, 1), 2);  // [N, D]
  return Sum(log_p, 1);
}

Tensor IntegerDiscreteFlow::Nll(const Tensor& x) const {
  return -Mean(LogProb(x));
}

double IdfBitsPerDim(const IntegerDiscreteFlow& flow, const Tensor& x,
                     int64_t batch_size) {
  NoGradScope no_grad;
  const int64_t d = flow.options().dims();
  Tensor flat = Reshape(x, {-1, d});
  const int64_t n = flat.dim(0);
  double total = 0.0;
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t m = std::min(batch_size, n - i);
    total -= Sum(flow.LogProb(Narrow(flat, 0, i, m))).item();
  }
  return total / (static_cast<double>(n) * d * std::log(2.0));
}

absl::Status SaveIdf(const std::string& path, const IntegerDiscreteFlow& flow) {
  return nn::SaveCheckpoint(path, flow, nullptr,
                            {{kIdfKey, flow.options().ToJson().dump()}});
}

absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> LoadIdf(
    const std::string& path) {
  const std::string source = absl::StrCat("model file '", path, "'");
  nn::Metadata meta;
  FT_ASSIGN_OR_RETURN(nn::NamedTensors tensors,
                      nn::ReadTensorFile(path, &meta));
  auto it = meta.find(kIdfKey);
  if (it == meta.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no IDF description (metadata 'idf')"));
  }
  FT_ASSIGN_OR_RETURN(io::Json j,
                      io::ParseJson(it->second, source + ": IDF description"));
  absl::StatusOr<IdfOptions> options = IdfOptions::FromJson(j);
  if (!options.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", options.status().message()));
  }
  // The model must be exactly as large as the file's tensors: a hostile
  // description cannot make us build a huge model first.
  int64_t stored = 0;
  for (const auto& entry : tensors) stored += entry.second.numel();
  if (options->NumParameters() != stored) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": the IDF description needs ", options->NumParameters(),
        " parameters, the file holds ", stored, " values"));
  }
  Rng rng(0);
  FT_ASSIGN_OR_RETURN(auto flow, IntegerDiscreteFlow::Create(*options, rng));
  FT_RETURN_IF_ERROR(nn::RestoreFromTensors(source, tensors, *flow));
  return flow;
}

}  // namespace flowtape::compression
