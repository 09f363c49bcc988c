#include "compression/idf.h"

#include <algorithm>
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

constexpr char kIdfKey[] = "idf2";
constexpr char kIdfV1Key[] = "idf";

absl::Status Bad(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("idf options: ", field, " ", why));
}

int64_t ConvNetParameters(int64_t in, const std::vector<int64_t>& hidden,
                          int64_t out) {
  int64_t total = 0;
  for (int64_t h : hidden) {
    total += (in * kIdfKernel * kIdfKernel + 1) * h;
    in = h;
  }
  return total + (in * kIdfKernel * kIdfKernel + 1) * out;
}

// Initial mixture means (pixel units) and log-scale parameter.
double InitialMean(int c, int k) {
  return k == 1 ? 127.5 : c * 255.0 / (k - 1);
}
const double kInitialLogScale = std::log(8.0) / kIdfLogScaleUnit;

// log P(z) of the discretised logistic mixture, components along `axis` of
// the parameters (z has extent 1 there).
Tensor MixtureLogProb(const Tensor& z, const Tensor& logits,
                      const Tensor& means, const Tensor& log_scales, int axis,
                      double mean_unit, double log_scale_unit) {
  Tensor centred = z - means * mean_unit;
  Tensor inv_s = Exp(log_scales * -log_scale_unit);
  Tensor hi = (centred + 0.5) * inv_s;
  Tensor lo = (centred - 0.5) * inv_s;
  Tensor log_bin = LogSigmoid(hi) + LogSigmoid(-lo) + Log(-Expm1(-inv_s));
  return LogSumExp(log_bin + LogSoftmax(logits, axis), axis);
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
  if (levels.empty() || levels.size() > 8) {
    return Bad("levels", "must have 1..8 levels");
  }
  int64_t c = 1, h = height, w = width;
  for (size_t l = 0; l < levels.size(); ++l) {
    const std::string name = absl::StrCat("levels[", l, "]");
    if (levels[l].squeeze) {
      if (h % 2 != 0 || w % 2 != 0) {
        return Bad(name, absl::StrCat("squeezes a ", h, " x ", w,
                                      " image (sides must be even)"));
      }
      c *= 4;
      h /= 2;
      w /= 2;
    }
    if (levels[l].couplings < 0 || levels[l].couplings > 16) {
      return Bad(name, "couplings must be in 0..16");
    }
    const bool factors = l + 1 < levels.size();
    if ((levels[l].couplings > 0 || factors) && c < 2) {
      return Bad(name, "couples or factors out a single channel");
    }
    if (factors) c /= 2;
  }
  if (hidden.empty() || hidden.size() > 4) {
    return Bad("hidden", "must have 1..4 layers");
  }
  for (int64_t n : hidden) {
    if (n < 1 || n > 512) return Bad("hidden", "sizes must be in 1..512");
  }
  if (components < 1 || components > 16) {
    return Bad("components", "must be in 1..16");
  }
  return absl::OkStatus();
}

IdfShape IdfOptions::LevelShape(int l) const {
  IdfShape s{1, height, width};
  for (int i = 0; i <= l; ++i) {
    if (i > 0) s.c = s.kept();
    if (levels[i].squeeze) s = {4 * s.c, s.h / 2, s.w / 2};
  }
  return s;
}

int64_t IdfOptions::NumParameters() const {
  const int num_levels = static_cast<int>(levels.size());
  int64_t total = 0;
  for (int l = 0; l < num_levels; ++l) {
    const IdfShape s = LevelShape(l);
    for (int k = 0; k < levels[l].couplings; ++k) {
      const int64_t a = k % 2 == 0 ? s.kept() : s.factored();
      total += ConvNetParameters(a, hidden, s.c - a);
    }
    if (l + 1 < num_levels) {
      total +=
          ConvNetParameters(s.kept(), hidden, 3 * s.factored() * components);
    } else {
      total += 3 * s.size() * components;
    }
  }
  return total;
}

io::Json IdfOptions::ToJson() const {
  io::Json lv = io::Json::array();
  for (const IdfLevel& l : levels) {
    lv.push_back(io::Json{{"squeeze", l.squeeze}, {"couplings", l.couplings}});
  }
  return io::Json{{"height", height},
                  {"width", width},
                  {"levels", lv},
                  {"hidden", hidden},
                  {"components", components}};
}

absl::StatusOr<IdfOptions> IdfOptions::FromJson(const io::Json& j) {
  if (!j.is_object()) return Bad("description", "must be a JSON object");
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k != "height" && k != "width" && k != "levels" && k != "hidden" &&
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
  for (const std::string name : {"height", "width", "components"}) {
    if (!j.contains(name)) return Bad(name, "is missing");
    FT_RETURN_IF_ERROR(integer(j.at(name), name, &v));
    if (name == "height") o.height = v;
    if (name == "width") o.width = v;
    if (name == "components") o.components = static_cast<int>(v);
  }
  if (!j.contains("hidden") || !j.at("hidden").is_array() ||
      j.at("hidden").size() > 4) {
    return Bad("hidden", "must be an array of 1..4 integers");
  }
  o.hidden.clear();
  for (const io::Json& h : j.at("hidden")) {
    FT_RETURN_IF_ERROR(integer(h, "hidden", &v));
    o.hidden.push_back(v);
  }
  if (!j.contains("levels") || !j.at("levels").is_array() ||
      j.at("levels").size() > 8) {
    return Bad("levels", "must be an array of 1..8 levels");
  }
  o.levels.clear();
  for (const io::Json& l : j.at("levels")) {
    if (!l.is_object() || l.size() != 2 || !l.contains("squeeze") ||
        !l.at("squeeze").is_boolean() || !l.contains("couplings")) {
      return Bad("levels",
                 "entries must be {\"squeeze\": bool, \"couplings\": int}");
    }
    FT_RETURN_IF_ERROR(integer(l.at("couplings"), "levels couplings", &v));
    o.levels.push_back({l.at("squeeze").get<bool>(), static_cast<int>(v)});
  }
  FT_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::shared_ptr<IdfConvNet>> IdfConvNet::Create(
    int64_t in, const std::vector<int64_t>& hidden, int64_t out, Rng& rng) {
  if (in < 1 || out < 1)
    return absl::InvalidArgumentError(absl::StrCat("idf conv net: in = ", in,
                                                   " and out = ", out,
                                                   " channels must be >= 1"));
  for (size_t i = 0; i < hidden.size(); ++i)
    if (hidden[i] < 1)
      return absl::InvalidArgumentError(absl::StrCat(
          "idf conv net: hidden[", i, "] = ", hidden[i], " must be >= 1"));
  return std::shared_ptr<IdfConvNet>(new IdfConvNet(in, hidden, out, rng));
}

IdfConvNet::IdfConvNet(int64_t in, const std::vector<int64_t>& hidden,
                       int64_t out, Rng& rng) {
  for (size_t i = 0; i <= hidden.size(); ++i) {
    const bool last = i == hidden.size();
    const int64_t next = last ? out : hidden[i];
    layers_.push_back(RegisterModule(
        absl::StrCat("conv", i),
        nn::Conv2d::Create(in, next, kIdfKernel, rng,
                           last ? nn::ConvInit::kZeros : nn::ConvInit::kHe)
            .value()));
    in = next;
  }
}

Tensor IdfConvNet::operator()(const Tensor& x) const {
  Tensor h = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(h);
    if (i + 1 < layers_.size()) h = Relu(h);
  }
  return h;
}

std::vector<int64_t> IdfSqueezeIndex(int64_t c, int64_t h, int64_t w) {
  std::vector<int64_t> index;
  index.reserve(c * h * w);
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t r = 0; r < h / 2; ++r)
          for (int64_t s = 0; s < w / 2; ++s)
            index.push_back((ci * h + 2 * r + i) * w + 2 * s + j);
  return index;
}

absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>>
IntegerDiscreteFlow::Create(const IdfOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<IntegerDiscreteFlow>(
      new IntegerDiscreteFlow(options, rng));
}

IntegerDiscreteFlow::IntegerDiscreteFlow(const IdfOptions& options, Rng& rng)
    : options_(options) {
  const int num_levels = static_cast<int>(options.levels.size());
  const int kc = options.components;
  couplings_.resize(num_levels);
  for (int l = 0; l < num_levels; ++l) {
    const IdfShape s = options.LevelShape(l);
    for (int k = 0; k < options.levels[l].couplings; ++k) {
      const int64_t a = k % 2 == 0 ? s.kept() : s.factored();
      couplings_[l].push_back(RegisterModule(
          absl::StrCat("level", l, ".coupling", k),
          IdfConvNet::Create(a, options.hidden, s.c - a, rng).value()));
    }
    if (l + 1 == num_levels) break;
    const int64_t f = s.factored();
    auto net = RegisterModule(
        absl::StrCat("level", l, ".prior"),
        IdfConvNet::Create(s.kept(), options.hidden, 3 * f * kc, rng).value());
    Tensor bias = net->layers().back()->bias();
    double* b = bias.mutable_data<double>();
    for (int64_t ch = 0; ch < f; ++ch) {
      for (int c = 0; c < kc; ++c) {
        b[(1 * f + ch) * kc + c] = InitialMean(c, kc) / kIdfNetMeanUnit;
        b[(2 * f + ch) * kc + c] =
            kInitialLogScale * kIdfLogScaleUnit / kIdfNetLogScaleUnit;
      }
    }
    prior_nets_.push_back(net);
  }
  const int64_t d = options.LevelShape(num_levels - 1).size();
  std::vector<double> means(d * kc), scales(d * kc, kInitialLogScale);
  for (int64_t i = 0; i < d; ++i) {
    for (int c = 0; c < kc; ++c) {
      means[i * kc + c] = InitialMean(c, kc) / kIdfMeanUnit;
    }
  }
  logits_ = RegisterParameter("prior.logits", Tensor::Zeros({d, kc}));
  means_ = RegisterParameter("prior.means", Tensor::FromVector({d, kc}, means));
  log_scales_ = RegisterParameter("prior.log_scales",
                                  Tensor::FromVector({d, kc}, scales));
}

Tensor IntegerDiscreteFlow::Couple(int l, const Tensor& v, double sign) const {
  const int64_t c = v.dim(1), c2 = c / 2;
  const int num = static_cast<int>(couplings_[l].size());
  Tensor out = v;
  for (int i = 0; i < num; ++i) {
    const int k = sign > 0 ? i : num - 1 - i;
    const bool even = k % 2 == 0;
    Tensor lo = Narrow(out, 1, 0, c2), hi = Narrow(out, 1, c2, c - c2);
    const Tensor& xa = even ? lo : hi;
    const Tensor& xb = even ? hi : lo;
    Tensor t = (*couplings_[l][k])((xa - kIdfInputCenter) * kIdfInputScale);
    Tensor shift = Clamp(RoundStraightThrough(t), -kIdfMaxShift, kIdfMaxShift);
    Tensor yb = sign > 0 ? xb + shift : xb - shift;
    out = even ? Concat({xa, yb}, 1) : Concat({yb, xa}, 1);
  }
  return out;
}

Tensor IntegerDiscreteFlow::ConditionalLogProb(int l, const Tensor& z,
                                               const Tensor& kept) const {
  const IdfShape s = options_.LevelShape(l);
  const int64_t n = z.dim(0), f = s.factored(), kc = options_.components;
  FT_CHECK(z.rank() == 4 && z.dim(1) == f && kept.rank() == 4 &&
               kept.dim(1) == s.kept(),
           "idf conditional prior: z ", z.shape().ToString(), ", kept ",
           kept.shape().ToString(), " at level ", l);
  Tensor params = (*prior_nets_[l])((kept - kIdfInputCenter) * kIdfInputScale);
  // Tensors have rank <= 4: components on axis 1 of [N f, K, h w].
  params = Reshape(params, {n, 3, f * kc, s.h * s.w});
  auto part = [&](int p) {
    return Reshape(Narrow(params, 1, p, 1), {n * f, kc, s.h * s.w});
  };
  Tensor lp =
      MixtureLogProb(Reshape(z, {n * f, 1, s.h * s.w}), part(0), part(1),
                     part(2), 1, kIdfNetMeanUnit, kIdfNetLogScaleUnit);
  return Reshape(lp, {n, f, s.h, s.w});
}

Tensor IntegerDiscreteFlow::FinalLogProb(const Tensor& z) const {
  const int64_t d = logits_.dim(0);
  FT_CHECK(z.rank() == 2 && z.dim(1) == d, "idf final prior: input ",
           z.shape().ToString(), " for ", d, " latents");
  const int64_t kc = options_.components;
  auto param = [&](const Tensor& t) { return Reshape(t, {1, d, kc}); };
  return MixtureLogProb(Reshape(z, {-1, d, 1}), param(logits_), param(means_),
                        param(log_scales_), 2, kIdfMeanUnit, kIdfLogScaleUnit);
}

Tensor IntegerDiscreteFlow::Run(const Tensor& x, Tensor* log_p) const {
  const int64_t d = options_.dims();
  FT_CHECK(x.numel() % d == 0 && x.rank() >= 2, "idf: input ",
           x.shape().ToString(), " for D = ", d);
  const int64_t n = x.numel() / d;
  const int num_levels = static_cast<int>(options_.levels.size());
  Tensor v = Reshape(x, {n, 1, options_.height, options_.width});
  std::vector<Tensor> latents;
  for (int l = 0; l < num_levels; ++l) {
    const IdfShape s = options_.LevelShape(l);
    if (options_.levels[l].squeeze) {
      const std::vector<int64_t> index =
          IdfSqueezeIndex(v.dim(1), v.dim(2), v.dim(3));
      v = Reshape(IndexSelect(Reshape(v, {n, -1}), 1, index),
                  {n, s.c, s.h, s.w});
    }
    v = Couple(l, v, +1.0);
    if (l + 1 == num_levels) {
      Tensor z = Reshape(v, {n, -1});
      if (log_p != nullptr) *log_p = *log_p + Sum(FinalLogProb(z), 1);
      latents.push_back(z);
      break;
    }
    Tensor kept = Narrow(v, 1, 0, s.kept());
    Tensor z = Narrow(v, 1, s.kept(), s.factored());
    if (log_p != nullptr) {
      *log_p =
          *log_p + Sum(Reshape(ConditionalLogProb(l, z, kept), {n, -1}), 1);
    }
    latents.push_back(Reshape(z, {n, -1}));
    v = kept;
  }
  std::reverse(latents.begin(), latents.end());
  return latents.size() == 1 ? latents[0] : Concat(latents, 1);
}

Tensor IntegerDiscreteFlow::Forward(const Tensor& x) const {
  return Run(x, nullptr);
}

Tensor IntegerDiscreteFlow::LogProb(const Tensor& x) const {
  const int64_t n = x.numel() / options_.dims();
  Tensor log_p = Tensor::Zeros({n}, x.dtype());
  Run(x, &log_p);
  return log_p;
}

Tensor IntegerDiscreteFlow::Inverse(const Tensor& z) const {
  const int64_t d = options_.dims();
  FT_CHECK(z.rank() == 2 && z.dim(1) == d, "idf inverse: input ",
           z.shape().ToString(), " for D = ", d);
  const int64_t n = z.dim(0);
  const int num_levels = static_cast<int>(options_.levels.size());
  IdfShape s = options_.LevelShape(num_levels - 1);
  int64_t offset = s.size();
  Tensor v = Reshape(Narrow(z, 1, 0, offset), {n, s.c, s.h, s.w});
  for (int l = num_levels - 1; l >= 0; --l) {
    s = options_.LevelShape(l);
    if (l + 1 < num_levels) {
      const int64_t size = s.factored() * s.h * s.w;
      Tensor zl =
          Reshape(Narrow(z, 1, offset, size), {n, s.factored(), s.h, s.w});
      offset += size;
      v = Concat({v, zl}, 1);
    }
    v = Couple(l, v, -1.0);
    if (options_.levels[l].squeeze) {
      const int64_t c = s.c / 4, h = 2 * s.h, w = 2 * s.w;
      const std::vector<int64_t> index = IdfSqueezeIndex(c, h, w);
      std::vector<int64_t> inverse(index.size());
      for (size_t q = 0; q < index.size(); ++q) inverse[index[q]] = q;
      v = Reshape(IndexSelect(Reshape(v, {n, -1}), 1, inverse), {n, c, h, w});
    }
  }
  return Reshape(v, {n, d});
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
    if (meta.count(kIdfV1Key) > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          source,
          ": single-scale IDF model (format 1, metadata 'idf') is no longer "
          "supported; retrain with //experiments:compress_mnist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no IDF description (metadata 'idf2')"));
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
