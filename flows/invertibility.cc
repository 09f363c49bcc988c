#include "flows/invertibility.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "flows/sequential.h"

namespace flowtape::flows {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr uint64_t kFlowStream = 1, kPowerStream = 2;

double Eps(DType d) {
  return d == kFloat32 ? std::ldexp(1.0, -23) : std::ldexp(1.0, -52);
}

// NaN-propagating max.
double Max(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return kNaN;
  return std::max(a, b);
}

struct Layer {
  std::string name;
  const Flow* flow;
};

void Flatten(const Flow& f, const std::string& path, std::vector<Layer>* out) {
  if (const auto* s = dynamic_cast<const Sequential*>(&f)) {
    for (size_t i = 0; i < s->size(); ++i)
      Flatten(*s->step(i),
              path.empty() ? absl::StrCat(i) : absl::StrCat(path, ".", i), out);
    return;
  }
  out->push_back({absl::StrCat(path.empty() ? "0" : path, " ", f.name()), &f});
}

// The model's buffers, kept as doubles and written back in whatever dtype
// they have when restored.
class BufferSnapshot {
 public:
  explicit BufferSnapshot(const nn::Module& m) {
    for (const auto& [name, t] : m.NamedBuffers()) {
      tensors_.push_back(t);
      values_.push_back(t.ToVector());
    }
  }
  void Restore() {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      Tensor& t = tensors_[i];
      VisitDType(t.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* p = t.mutable_data<T>();
        for (size_t k = 0; k < values_[i].size(); ++k)
          p[k] = static_cast<T>(values_[i][k]);
      });
    }
  }

 private:
  std::vector<Tensor> tensors_;
  std::vector<std::vector<double>> values_;
};

void ConvertInPlace(const nn::Module& m, DType d) {
  for (const auto& list : {m.NamedParameters(), m.NamedBuffers()})
    for (const auto& [name, t] : list) t.storage()->ConvertTo(d);
}

ErrorStats Errors(const Tensor& a, const Tensor& b) {
  const std::vector<double> va = a.ToVector(), vb = b.ToVector();
  const int64_t n = a.dim(0), m = a.numel() / n;
  ErrorStats s;
  s.per_sample_max.assign(n, 0.0);
  s.per_sample_mean.assign(n, 0.0);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double mx = 0.0, sm = 0.0;
    for (int64_t k = i * m; k < (i + 1) * m; ++k) {
      const double e = std::abs(va[k] - vb[k]);
      mx = Max(mx, e);
      sm += e;
    }
    s.per_sample_max[i] = mx;
    s.per_sample_mean[i] = sm / m;
    s.max = Max(s.max, mx);
    sum += sm;
  }
  s.mean = sum / a.numel();
  return s;
}

// max |t_n| over each sample's entries.
std::vector<double> SampleScale(const Tensor& t) {
  const std::vector<double> v = t.ToVector();
  const int64_t n = t.dim(0), m = t.numel() / n;
  std::vector<double> s(n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = i * m; k < (i + 1) * m; ++k)
      s[i] = Max(s[i], std::abs(v[k]));
  return s;
}

double DigitsLost(double err, double scale, double eps) {
  if (!std::isfinite(err) || !std::isfinite(scale)) return kInf;
  return std::log10(std::max(1.0, err / (eps * std::max(1.0, scale))));
}

// Three passes: z = f(x), x' = f^-1(z), z' = f(x'). Returns z in *z.
RoundTrip MeasureRoundTrip(const Flow& f, const Tensor& x, const Tensor& c,
                           uint64_t seed, BufferSnapshot& buffers, Tensor* z) {
  NoGradScope no_grad;
  auto pass = [&](const Tensor& in, bool inverse) {
    buffers.Restore();
    Rng rng(seed, kFlowStream);
    return inverse ? f.Inverse(in, c, &rng) : f.Forward(in, c, &rng);
  };
  const FlowResult fwd = pass(x, false);
  const FlowResult inv = pass(fwd.value, true);
  const FlowResult again = pass(inv.value, false);
  RoundTrip r;
  for (const FlowResult* p : {&fwd, &inv, &again})
    if (r.status.ok() && !p->status.ok()) r.status = p->status;
  r.forward = Errors(inv.value, x);
  r.inverse = Errors(again.value, fwd.value);
  r.logdet_gap = Errors(Reshape(fwd.logdet, {x.dim(0), 1}),
                        Reshape(-inv.logdet, {x.dim(0), 1}));
  const double eps = Eps(x.dtype());
  const std::vector<double> sx = SampleScale(x), sz = SampleScale(fwd.value);
  r.digits_lost.resize(x.dim(0));
  for (int64_t i = 0; i < x.dim(0); ++i) {
    r.digits_lost[i] =
        std::max(DigitsLost(r.forward.per_sample_max[i], sx[i], eps),
                 DigitsLost(r.inverse.per_sample_max[i], sz[i], eps));
    r.max_digits_lost = std::max(r.max_digits_lost, r.digits_lost[i]);
  }
  *z = fwd.value;
  return r;
}

// sigma_max of each sample's Jacobian of fn at x (power iteration on J'J).
std::vector<double> LargestSingularValues(const TensorFn& fn, const Tensor& x,
                                          const InvertibilityOptions& o,
                                          int* iterations) {
  const int64_t n = x.dim(0), m = x.numel() / n;
  Rng rng(o.seed, kPowerStream);
  std::vector<double> v = Tensor::Randn(x.shape(), rng).ToVector();
  auto normalize = [&](std::vector<double>& a) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = i * m; k < (i + 1) * m; ++k) s += a[k] * a[k];
      s = std::sqrt(s);
      if (s > 0)
        for (int64_t k = i * m; k < (i + 1) * m; ++k) a[k] /= s;
    }
  };
  normalize(v);
  std::vector<double> sigma(n, kNaN);
  EnableGradScope grad;
  int it = 0;
  while (it < o.power_iterations) {
    ++it;
    std::vector<double> jv, w;
    {
      TapeScope scope;
      const Tensor vt = Tensor::FromVector(x.shape(), v);
      const Tensor j = Jvp(fn, x, vt).second;
      jv = j.ToVector();
      w = Vjp(fn, x, j).second.ToVector();
    }
    const int64_t mo = static_cast<int64_t>(jv.size()) / n;
    bool converged = true;
    for (int64_t i = 0; i < n; ++i) {
      double s2 = 0.0, res = 0.0;
      for (int64_t k = i * mo; k < (i + 1) * mo; ++k) s2 += jv[k] * jv[k];
      for (int64_t k = i * m; k < (i + 1) * m; ++k) {
        const double d = w[k] - s2 * v[k];
        res += d * d;
      }
      sigma[i] = std::sqrt(s2);
      if (!(std::sqrt(res) <= o.power_tolerance * s2) && std::isfinite(s2) &&
          s2 > 0)
        converged = false;
    }
    normalize(w);
    v = std::move(w);
    if (converged) break;
  }
  *iterations = it;
  return sigma;
}

void MeasureLipschitz(const Flow& f, const Tensor& x, const Tensor& z,
                      const Tensor& c, const InvertibilityOptions& o,
                      BufferSnapshot& buffers, LayerInvertibility* out) {
  auto fn = [&](bool inverse) -> TensorFn {
    return [&, inverse](const Tensor& in) {
      buffers.Restore();
      Rng rng(o.seed, kFlowStream);
      return inverse ? f.Inverse(in, c, &rng).value
                     : f.Forward(in, c, &rng).value;
    };
  };
  int a = 0, b = 0;
  out->lipschitz = LargestSingularValues(fn(false), x, o, &a);
  out->inverse_lipschitz = LargestSingularValues(fn(true), z, o, &b);
  out->power_iterations = std::max(a, b);
  for (size_t i = 0; i < out->lipschitz.size(); ++i) {
    out->condition.push_back(out->lipschitz[i] * out->inverse_lipschitz[i]);
    out->max_lipschitz = Max(out->max_lipschitz, out->lipschitz[i]);
    out->max_inverse_lipschitz =
        Max(out->max_inverse_lipschitz, out->inverse_lipschitz[i]);
    out->max_condition = Max(out->max_condition, out->condition.back());
  }
}

// Round trips (and, in float64, Lipschitz constants) of the model and of
// every layer at x (already in the model's current dtype).
void MeasureAll(const Flow& model, const std::vector<Layer>& layers,
                const Tensor& x, const InvertibilityOptions& o, bool float64,
                bool lipschitz, BufferSnapshot& buffers, Invertibility* r) {
  const Tensor c = o.context.defined() ? Cast(o.context, x.dtype()) : Tensor();
  auto measure = [&](const Flow& f, const Tensor& in, LayerInvertibility* out) {
    Tensor z;
    RoundTrip t = MeasureRoundTrip(f, in, c, o.seed, buffers, &z);
    if (lipschitz) MeasureLipschitz(f, in, z, c, o, buffers, out);
    (float64 ? out->float64 : out->native) = std::move(t);
    return z;
  };
  measure(model, x, &r->model);
  Tensor in = x;
  for (size_t k = 0; k < layers.size(); ++k)
    in = measure(*layers[k].flow, in, &r->layers[k]);
}

std::string Num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.2e", v);
}

}  // namespace

absl::Status InvertibilityOptions::Validate() const {
  if (power_iterations < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("invertibility: power_iterations must be >= 1, got ",
                     power_iterations));
  if (!(power_tolerance > 0) || !std::isfinite(power_tolerance))
    return absl::InvalidArgumentError(absl::StrCat(
        "invertibility: power_tolerance must be positive and finite, got ",
        power_tolerance));
  return absl::OkStatus();
}

absl::StatusOr<Invertibility> InvertibilityReport(
    const Flow& model, const Tensor& x, const InvertibilityOptions& o) {
  FT_RETURN_IF_ERROR(o.Validate());
  if (!x.defined() || x.rank() < 2 || x.dim(0) == 0)
    return absl::InvalidArgumentError(
        "invertibility: x must be a batch [N, ...] with N >= 1");
  for (double v : x.ToVector())
    if (!std::isfinite(v))
      return absl::InvalidArgumentError(
          "invertibility: x has a non-finite entry");
  if (o.context.defined() &&
      (o.context.rank() < 1 || o.context.dim(0) != x.dim(0)))
    return absl::InvalidArgumentError(
        absl::StrCat("invertibility: the context has ",
                     o.context.rank() < 1 ? 0 : o.context.dim(0),
                     " rows, x has ", x.dim(0)));

  Invertibility r;
  r.dtype = model.dtype();
  r.samples = x.dim(0);
  r.model.name = "model";
  std::vector<Layer> layers;
  if (o.per_layer) Flatten(model, "", &layers);
  for (const Layer& l : layers) {
    r.layers.emplace_back();
    r.layers.back().name = l.name;
  }
  BufferSnapshot buffers(model);
  const bool native64 = r.dtype == kFloat64;
  MeasureAll(model, layers, Cast(x.Detach(), r.dtype), o, native64,
             native64 && o.lipschitz, buffers, &r);
  if (!native64) {
    ConvertInPlace(model, kFloat64);
    MeasureAll(model, layers, Cast(x.Detach(), kFloat64), o, true, o.lipschitz,
               buffers, &r);
    buffers.Restore();
    ConvertInPlace(model, r.dtype);
  } else {
    r.model.native = r.model.float64;
    for (LayerInvertibility& l : r.layers) l.native = l.float64;
  }
  buffers.Restore();

  for (size_t k = 0; k < r.layers.size(); ++k) r.worst_layers.push_back(k);
  auto key = [&](size_t k) {
    const LayerInvertibility& l = r.layers[k];
    const double c = std::isnan(l.max_condition) ? kInf : l.max_condition;
    return std::make_tuple(l.native.max_digits_lost, l.float64.max_digits_lost,
                           c);
  };
  std::stable_sort(r.worst_layers.begin(), r.worst_layers.end(),
                   [&](size_t a, size_t b) { return key(a) > key(b); });
  return r;
}

std::string FormatInvertibility(const Invertibility& r) {
  const std::string dt = DTypeName(r.dtype);
  std::string out = absl::StrFormat(
      "%-24s %10s %10s %10s %10s %10s %10s %10s %10s %7s  %s\n", "layer",
      absl::StrCat("fwd ", dt == "float32" ? "f32" : "f64"),
      absl::StrCat("inv ", dt == "float32" ? "f32" : "f64"), "fwd f64",
      "inv f64", "logdet gap", "Lip(f)", "Lip(f^-1)", "condition", "digits",
      "status");
  auto row = [&](const LayerInvertibility& l) {
    absl::StrAppendFormat(
        &out, "%-24s %10s %10s %10s %10s %10s %10s %10s %10s %7.2f  %s\n",
        l.name.substr(0, 24), Num(l.native.forward.max),
        Num(l.native.inverse.max), Num(l.float64.forward.max),
        Num(l.float64.inverse.max), Num(l.native.logdet_gap.max),
        Num(l.max_lipschitz), Num(l.max_inverse_lipschitz),
        Num(l.max_condition), l.native.max_digits_lost,
        l.native.status.ok() ? "ok" : std::string(l.native.status.message()));
  };
  for (const LayerInvertibility& l : r.layers) row(l);
  row(r.model);
  absl::StrAppendFormat(
      &out, "%d samples, %s; errors are max |.| over samples\n", r.samples, dt);
  if (!r.worst_layers.empty()) {
    out += "most digits lost:";
    for (size_t i = 0; i < std::min<size_t>(3, r.worst_layers.size()); ++i) {
      const LayerInvertibility& l = r.layers[r.worst_layers[i]];
      absl::StrAppendFormat(&out, "%s %s (%.2f)", i ? "," : "", l.name,
                            l.native.max_digits_lost);
    }
    out += "\n";
  }
  return out;
}

std::string InvertibilityAlarm(const Invertibility& r, double max_condition,
                               double max_inverse_lipschitz) {
  const LayerInvertibility& m = r.model;
  std::string why;
  if (!m.native.status.ok()) {
    why = absl::StrCat("inverse failed: ", m.native.status.message());
  } else if (std::isinf(m.native.max_digits_lost)) {
    why = "round trip not finite";
  } else if (max_condition > 0 && !(m.max_condition <= max_condition)) {
    why = absl::StrFormat("condition Lip(f) Lip(f^-1) %s > %s",
                          Num(m.max_condition), Num(max_condition));
  } else if (max_inverse_lipschitz > 0 &&
             !(m.max_inverse_lipschitz <= max_inverse_lipschitz)) {
    why = absl::StrFormat("Lip(f^-1) %s > %s", Num(m.max_inverse_lipschitz),
                          Num(max_inverse_lipschitz));
  } else {
    return "";
  }
  std::string out = absl::StrFormat(
      "bad inverse: %s (Lip(f) %s, Lip(f^-1) %s, %.1f digits lost in %s)", why,
      Num(m.max_lipschitz), Num(m.max_inverse_lipschitz),
      m.native.max_digits_lost, DTypeName(r.dtype));
  if (!r.worst_layers.empty()) {
    const LayerInvertibility& w = r.layers[r.worst_layers[0]];
    absl::StrAppendFormat(&out, "; worst layer %s (condition %s, %.1f digits)",
                          w.name, Num(w.max_condition),
                          w.native.max_digits_lost);
  }
  return out;
}

}  // namespace flowtape::flows
