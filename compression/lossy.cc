#include "compression/lossy.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "compression/rans.h"
#include "compression/symbol_coding.h"
#include "data/preprocess.h"

namespace flowtape::compression {
namespace {

constexpr char kMagic[4] = {'F', 'T', 'L', 'Y'};
constexpr uint32_t kVersion = 1;

uint64_t Bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return b;
}
double FromBits(uint64_t b) {
  double v;
  std::memcpy(&v, &b, 8);
  return v;
}

struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void Add(uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 0x100000001b3ull;
    }
  }
};

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
         uint32_t{p[3]} << 24;
}
uint64_t GetU64(const uint8_t* p) {
  return uint64_t{GetU32(p)} | uint64_t{GetU32(p + 4)} << 32;
}
uint32_t Crc(const uint8_t* p, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::vector<int64_t> WithBatch(int64_t n, const Shape& s) {
  std::vector<int64_t> dims = {n};
  for (int64_t v : s.dims()) dims.push_back(v);
  return dims;
}

}  // namespace

absl::Status CheckPixels(const LossyModel& m, const Tensor& pixels) {
  const Shape& s = pixels.shape();
  if (s.rank() != 4 || Shape({s[1], s[2], s[3]}) != m.image || s[0] < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lossy codec: pixels ", s.ToString(), " are not [N >= 1, ",
                     m.image.ToString(), "...]"));
  }
  const std::vector<double> v = pixels.ToVector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!(v[i] >= 0 && v[i] <= m.levels - 1) || v[i] != std::floor(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("lossy codec: pixel ", i, " = ", v[i],
                       " is not an integer in 0..", m.levels - 1));
    }
  }
  return absl::OkStatus();
}

Tensor FlowInput(const LossyModel& m, const Tensor& pixels) {
  const int64_t n = pixels.dim(0);
  Tensor y = Cast(pixels, m.flow->dtype());
  if (m.pixel_map == PixelMap::kLogit) {
    y = data::LogitTransform((y + 0.5) * (1.0 / m.levels), m.alpha).y;
  }
  return Reshape(y, WithBatch(n, m.event));
}

absl::StatusOr<Tensor> DecodeLatents(const LossyModel& m, const Tensor& z) {
  const int64_t n = z.dim(0);
  flows::FlowResult r = m.flow->Inverse(Reshape(z, WithBatch(n, m.event)));
  FT_RETURN_IF_ERROR(r.status);
  Tensor y = Reshape(r.value, {n, -1});
  if (m.pixel_map == PixelMap::kLogit) {
    y = data::InverseLogit(y, m.alpha) * static_cast<double>(m.levels) - 0.5;
  }
  return y;
}

absl::StatusOr<Tensor> Latents(const LossyModel& m, const Tensor& pixels) {
  if (m.flow == nullptr) {
    return absl::InvalidArgumentError("lossy codec: no flow");
  }
  FT_RETURN_IF_ERROR(CheckPixels(m, pixels));
  NoGradScope no_grad;
  std::vector<Tensor> chunks;
  for (int64_t start = 0; start < pixels.dim(0); start += kLossyChunk) {
    const int64_t n = std::min(kLossyChunk, pixels.dim(0) - start);
    flows::FlowResult r =
        m.flow->Forward(FlowInput(m, Narrow(pixels, 0, start, n)));
    FT_RETURN_IF_ERROR(r.status);
    chunks.push_back(Cast(Reshape(r.value, {n, -1}), kFloat64));
  }
  Tensor z = Concat(chunks, 0).Detach();
  const double* pz = z.data<double>();
  for (int64_t i = 0; i < z.numel(); ++i) {
    if (!std::isfinite(pz[i])) {
      return absl::FailedPreconditionError(
          absl::StrCat("lossy codec: latent ", i, " of the flow is ", pz[i]));
    }
  }
  return z;
}

absl::StatusOr<std::vector<double>> SensitivityStepScales(const LossyModel& m,
                                                          const Tensor& pixels,
                                                          int probes,
                                                          Rng& rng) {
  if (probes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SensitivityStepScales: probes = ", probes));
  }
  FT_ASSIGN_OR_RETURN(const Tensor z, Latents(m, pixels));
  const int64_t n = z.dim(0), d = z.dim(1);
  EnableGradScope grad;
  std::vector<double> sq(d, 0.0);  // sum of (J^T v)_d^2
  for (int64_t start = 0; start < n; start += kLossyChunk) {
    const int64_t len = std::min(kLossyChunk, n - start);
    const Tensor zc = Cast(Narrow(z, 0, start, len), m.flow->dtype());
    for (int p = 0; p < probes; ++p) {
      TapeScope scope;
      absl::Status status;
      const TensorFn decode = [&](const Tensor& t) {
        absl::StatusOr<Tensor> x = DecodeLatents(m, t);
        if (!x.ok()) {
          status = x.status();
          return t * 0.0;
        }
        return *x;
      };
      const Tensor v = Tensor::Rademacher(Shape{len, d}, rng, zc.dtype());
      const Tensor jtv = Cast(Vjp(decode, zc, v).second, kFloat64).Detach();
      if (!status.ok()) return status;
      const double* g = jtv.data<double>();
      for (int64_t i = 0; i < len * d; ++i) sq[i % d] += g[i] * g[i];
    }
  }
  // w_d = G / |J_d|, G the geometric mean of |J_d| (floored away from 0).
  std::vector<double> norm(d);
  double log_mean = 0;
  for (int64_t j = 0; j < d; ++j) {
    norm[j] = std::max(std::sqrt(sq[j] / (n * probes)), 1e-12);
    log_mean += std::log(norm[j]) / d;
  }
  std::vector<double> w(d);
  for (int64_t j = 0; j < d; ++j) {
    w[j] = std::clamp(std::exp(log_mean) / norm[j], 1 / kLossyMaxStepRatio,
                      kLossyMaxStepRatio);
    if (!std::isfinite(w[j])) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SensitivityStepScales: latent ", j, " sensitivity ", norm[j]));
    }
  }
  return w;
}

absl::StatusOr<LatentPrior> FitLatentPrior(const Tensor& latents) {
  if (latents.shape().rank() != 2 || latents.dim(0) < 2) {
    return absl::InvalidArgumentError(absl::StrCat("FitLatentPrior: latents ",
                                                   latents.shape().ToString(),
                                                   " are not [N >= 2, D]"));
  }
  const int64_t n = latents.dim(0), d = latents.dim(1);
  const std::vector<double> z = latents.ToVector();
  LatentPrior p;
  p.mean.assign(d, 0.0);
  p.scale.assign(d, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      if (!std::isfinite(z[i * d + j])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "FitLatentPrior: latent [", i, ", ", j, "] = ", z[i * d + j]));
      }
      p.mean[j] += z[i * d + j];
    }
  }
  for (double& m : p.mean) m /= n;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      const double e = z[i * d + j] - p.mean[j];
      p.scale[j] += e * e;
    }
  }
  for (double& s : p.scale) {
    s = std::max(1e-6, std::sqrt(3.0 * s / (n - 1)) / M_PI);
  }
  return p;
}

Distortion MeasureDistortion(const Tensor& x, const Tensor& x_hat, int levels) {
  FT_CHECK(x.shape() == x_hat.shape(),
           "MeasureDistortion: ", x.shape().ToString(), " vs ",
           x_hat.shape().ToString());
  const std::vector<double> a = x.ToVector(), b = x_hat.ToVector();
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
  Distortion d;
  d.mse = a.empty() ? 0.0 : sum / a.size();
  const double peak = levels - 1.0;
  d.psnr = d.mse > 0 ? 10 * std::log10(peak * peak / d.mse)
                     : std::numeric_limits<double>::infinity();
  return d;
}

absl::StatusOr<LossyCodec> LossyCodec::Create(LossyModel model, double delta,
                                              int precision_bits) {
  auto bad = [](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("LossyCodec: ", parts...));
  };
  if (model.flow == nullptr) return bad("no flow");
  const int64_t d = model.image.numel();
  if (model.image.rank() != 3 || d < 1 || model.event.numel() != d) {
    return bad("image ", model.image.ToString(), " and flow event ",
               model.event.ToString(), " differ in size (or image not 3-D)");
  }
  if (model.levels < 2) return bad("levels = ", model.levels);
  if (model.pixel_map == PixelMap::kLogit &&
      !(model.alpha >= 0 && model.alpha < 0.5)) {
    return bad("alpha = ", model.alpha, " outside [0, 1/2)");
  }
  const LatentPrior& prior = model.prior;
  if (static_cast<int64_t>(prior.mean.size()) != d ||
      static_cast<int64_t>(prior.scale.size()) != d) {
    return bad("prior of ", prior.mean.size(), " means and ",
               prior.scale.size(), " scales for ", d, " latents");
  }
  if (!std::isfinite(delta) || !(delta > 0)) return bad("Delta = ", delta);
  std::vector<double> steps(d, delta);
  if (!model.step_scale.empty()) {
    if (static_cast<int64_t>(model.step_scale.size()) != d) {
      return bad(model.step_scale.size(), " step scales for ", d, " latents");
    }
    for (int64_t j = 0; j < d; ++j) {
      const double w = model.step_scale[j];
      if (!std::isfinite(w) || !(w > 0)) return bad("step scale ", j, " = ", w);
      steps[j] = delta * w;
      if (!std::isfinite(steps[j]) || !(steps[j] > 0)) {
        return bad("Delta_", j, " = ", steps[j]);
      }
    }
  }
  if (precision_bits < 8 || precision_bits > 24) {
    return bad("precision_bits = ", precision_bits, " outside 8..24");
  }
  Fnv fp;
  fp.Add(d);
  fp.Add(model.levels);
  fp.Add(static_cast<uint64_t>(model.pixel_map));
  fp.Add(Bits(model.alpha));
  fp.Add(Bits(delta));
  fp.Add(precision_bits);
  std::vector<FrequencyTable> tables;
  std::vector<int64_t> first;
  tables.reserve(d);
  first.reserve(d);
  for (int64_t j = 0; j < d; ++j) {
    const double mu = prior.mean[j], s = prior.scale[j];
    if (!std::isfinite(mu) || !std::isfinite(s) || !(s > 0)) {
      return bad("prior ", j, ": mean ", mu, ", scale ", s);
    }
    const double step = steps[j];
    fp.Add(Bits(mu));
    fp.Add(Bits(s));
    fp.Add(Bits(step));
    const double centre = std::round(mu / step);
    const double half = std::ceil(kLossyTailScales * s / step) + 1;
    if (!(std::abs(centre) <= 0x1p40) ||
        !(2 * half + 1 <= std::ldexp(1.0, precision_bits - 1))) {
      return bad("latent ", j, " (mean ", mu, ", scale ", s, ") needs ",
                 2 * half + 1, " symbols at Delta_d = ", step, " (at most 2^",
                 precision_bits - 1, ")");
    }
    const int k = static_cast<int>(2 * half + 1);
    const int64_t lo = static_cast<int64_t>(centre - half);
    FT_ASSIGN_OR_RETURN(
        std::vector<uint32_t> f,
        DiscretizedLogisticFrequencies(mu / step - static_cast<double>(lo),
                                       s / step, k, precision_bits));
    FT_ASSIGN_OR_RETURN(FrequencyTable t,
                        FrequencyTable::Create(std::move(f), precision_bits));
    tables.push_back(std::move(t));
    first.push_back(lo);
  }
  for (const Tensor& p : model.flow->Parameters()) {
    for (double v : p.ToVector()) fp.Add(Bits(v));
  }
  return LossyCodec(std::move(model), delta, std::move(steps),
                    std::move(tables), std::move(first), fp.h);
}

absl::StatusOr<std::vector<int32_t>> LossyCodec::Quantize(
    const Tensor& latents) const {
  const int64_t d = dims();
  if (latents.shape().rank() != 2 || latents.dim(1) != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("LossyCodec::Quantize: latents ",
                     latents.shape().ToString(), " are not [N, ", d, "]"));
  }
  const std::vector<double> z = latents.ToVector();
  std::vector<int32_t> symbols(z.size());
  for (size_t i = 0; i < z.size(); ++i) {
    if (!std::isfinite(z[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("LossyCodec::Quantize: latent ", i, " is ", z[i]));
    }
    const FrequencyTable& t = tables_[i % d];
    const double k = std::round(z[i] / steps_[i % d]) - first_[i % d];
    symbols[i] = static_cast<int32_t>(
        std::clamp(k, 0.0, static_cast<double>(t.num_symbols() - 1)));
  }
  return symbols;
}

Tensor LossyCodec::Dequantize(absl::Span<const int32_t> symbols) const {
  const int64_t d = dims();
  FT_CHECK(static_cast<int64_t>(symbols.size()) % d == 0,
           "LossyCodec::Dequantize: ", symbols.size(), " symbols, D = ", d);
  const int64_t n = static_cast<int64_t>(symbols.size()) / d;
  Tensor z = Tensor::Zeros(Shape{n, d}, kFloat64);
  double* pz = z.mutable_data<double>();
  for (size_t i = 0; i < symbols.size(); ++i) {
    pz[i] = steps_[i % d] * static_cast<double>(first_[i % d] + symbols[i]);
  }
  return z;
}

absl::StatusOr<Tensor> LossyCodec::Reconstruct(const Tensor& z_hat) const {
  const int64_t d = dims();
  if (z_hat.shape().rank() != 2 || z_hat.dim(1) != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("LossyCodec::Reconstruct: z_hat ",
                     z_hat.shape().ToString(), " is not [N, ", d, "]"));
  }
  NoGradScope no_grad;
  const LossyModel& m = model_;
  std::vector<Tensor> chunks;
  for (int64_t start = 0; start < z_hat.dim(0); start += kLossyChunk) {
    const int64_t n = std::min(kLossyChunk, z_hat.dim(0) - start);
    FT_ASSIGN_OR_RETURN(
        const Tensor y,
        DecodeLatents(m, Cast(Narrow(z_hat, 0, start, n), m.flow->dtype())));
    chunks.push_back(Cast(Reshape(y, WithBatch(n, m.image)), kFloat64));
  }
  Tensor x = Concat(chunks, 0).Detach();
  double* px = x.mutable_data<double>();
  const double top = m.levels - 1.0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(px[i])) {
      return absl::FailedPreconditionError(
          absl::StrCat("LossyCodec::Reconstruct: f^-1 gives NaN at pixel ", i));
    }
    px[i] = std::clamp(px[i], 0.0, top);
  }
  return x;
}

double LossyCodec::IdealBits(absl::Span<const int32_t> symbols) const {
  const int64_t d = dims();
  double bits = 0;
  for (size_t i = 0; i < symbols.size(); ++i) {
    const FrequencyTable& t = tables_[i % d];
    bits +=
        t.precision_bits() - std::log2(static_cast<double>(t.freq(symbols[i])));
  }
  return bits;
}

absl::StatusOr<std::vector<uint8_t>> LossyCodec::Encode(
    const Tensor& pixels) const {
  FT_ASSIGN_OR_RETURN(const Tensor z, Latents(model_, pixels));
  if (z.numel() > kLossyMaxSymbols) {
    return absl::InvalidArgumentError(
        absl::StrCat("LossyCodec::Encode: ", z.numel(),
                     " latents exceed the container's ", kLossyMaxSymbols));
  }
  FT_ASSIGN_OR_RETURN(const std::vector<int32_t> symbols, Quantize(z));
  RansEncoder encoder;
  const int64_t d = dims();
  for (size_t i = 0; i < symbols.size(); ++i) {
    FT_RETURN_IF_ERROR(EncodeSymbol(encoder, tables_[i % d], symbols[i]));
  }
  const std::vector<uint8_t> stream = encoder.Finish();
  std::vector<uint8_t> out(kMagic, kMagic + 4);
  PutU32(out, kVersion);
  PutU64(out, Bits(delta_));
  PutU64(out, fingerprint_);
  PutU32(out, static_cast<uint32_t>(pixels.dim(0)));
  for (int a = 0; a < 3; ++a)
    PutU32(out, static_cast<uint32_t>(model_.image[a]));
  PutU64(out, stream.size());
  out.insert(out.end(), stream.begin(), stream.end());
  PutU32(out, Crc(out.data(), out.size()));
  return out;
}

absl::StatusOr<LossyCodec::Decoded> LossyCodec::Decode(
    absl::Span<const uint8_t> bytes) const {
  auto loss = [](auto... parts) {
    return absl::DataLossError(absl::StrCat("LossyCodec::Decode: ", parts...));
  };
  if (bytes.size() < kLossyHeaderBytes + 4) {
    return loss(bytes.size(), " bytes, shorter than the ",
                kLossyHeaderBytes + 4, "-byte header and checksum");
  }
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kMagic, 4) != 0) return loss("not a lossy container");
  if (GetU32(p + 4) != kVersion) {
    return loss("version ", GetU32(p + 4), " (this codec reads ", kVersion,
                ")");
  }
  const uint64_t stream_bytes = GetU64(p + 40);
  if (stream_bytes != bytes.size() - kLossyHeaderBytes - 4) {
    return loss("the header promises ", stream_bytes, " stream bytes, ",
                bytes.size() - kLossyHeaderBytes - 4, " are there");
  }
  if (Crc(p, bytes.size() - 4) != GetU32(p + bytes.size() - 4)) {
    return loss("checksum mismatch (corrupt container)");
  }
  const double delta = FromBits(GetU64(p + 8));
  if (Bits(delta) != Bits(delta_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("LossyCodec::Decode: coded at Delta = ", delta,
                     ", this codec has Delta = ", delta_));
  }
  if (GetU64(p + 16) != fingerprint_) {
    return absl::FailedPreconditionError(
        "LossyCodec::Decode: coded with another model (prior, flow or "
        "precision)");
  }
  const int64_t n = GetU32(p + 24);
  const Shape image{GetU32(p + 28), GetU32(p + 32), GetU32(p + 36)};
  if (image != model_.image) {
    return absl::FailedPreconditionError(
        absl::StrCat("LossyCodec::Decode: images ", image.ToString(),
                     ", the model's are ", model_.image.ToString()));
  }
  const int64_t d = dims();
  if (n < 1 || n > kLossyMaxSymbols / d) {
    return loss(n, " images of ", d, " latents (1..", kLossyMaxSymbols / d,
                " allowed)");
  }
  FT_ASSIGN_OR_RETURN(
      RansDecoder decoder,
      RansDecoder::Create(bytes.subspan(kLossyHeaderBytes, stream_bytes)));
  Decoded out;
  out.symbols.resize(n * d);
  for (int64_t i = 0; i < n * d; ++i) {
    FT_ASSIGN_OR_RETURN(out.symbols[i], DecodeSymbol(decoder, tables_[i % d]));
  }
  FT_RETURN_IF_ERROR(decoder.Finish());
  out.z_hat = Dequantize(out.symbols);
  FT_ASSIGN_OR_RETURN(out.pixels, Reconstruct(out.z_hat));
  return out;
}

}  // namespace flowtape::compression
