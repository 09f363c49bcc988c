#include "compression/idf_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"
#include "compression/deterministic_math.h"
#include "compression/rans.h"
#include "compression/symbol_coding.h"
#include "zlib.h"

namespace flowtape::compression {
namespace {

constexpr char kMagic[8] = {'F', 'T', 'I', 'D', 'F', 'C', '\0', '\1'};
constexpr uint32_t kVersion = 2;
constexpr int kTrailerBytes = 4;

uint32_t Crc32(absl::string_view bytes, uint32_t crc = 0) {
  // zlib's crc32 takes a uInt length: feed at most 1 GiB at a time.
  while (!bytes.empty()) {
    const size_t n = std::min<size_t>(bytes.size(), size_t{1} << 30);
    crc = static_cast<uint32_t>(
        crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()),
              static_cast<uInt>(n)));
    bytes.remove_prefix(n);
  }
  return crc;
}

void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLe(absl::string_view s, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v |= uint64_t{static_cast<uint8_t>(s[at + i])} << (8 * i);
  }
  return v;
}

// The table of a mixture whose K parameters sit `stride` apart (mu =
// mean_unit m, s = exp(log_scale_unit g)).
absl::StatusOr<FrequencyTable> MixtureTable(const double* l, const double* m,
                                            const double* g, int64_t stride,
                                            int kc, double mean_unit,
                                            double log_scale_unit) {
  double top = l[0];
  for (int c = 1; c < kc; ++c) top = std::max(top, l[c * stride]);
  std::vector<LogisticComponent> comps(kc);
  for (int c = 0; c < kc; ++c) {
    comps[c].weight = DetExp(l[c * stride] - top);
    comps[c].mean = m[c * stride] * mean_unit - kIdfLow;
    comps[c].scale = DetExp(g[c * stride] * log_scale_unit);
  }
  FT_ASSIGN_OR_RETURN(std::vector<double> pmf,
                      DiscretizedLogisticMixturePmf(comps, kIdfSymbols));
  FT_ASSIGN_OR_RETURN(std::vector<uint32_t> freqs,
                      QuantizeCumulative(pmf, kIdfPrecisionBits));
  return FrequencyTable::Create(std::move(freqs), kIdfPrecisionBits);
}

// Codes latent z under `table`, escaping values at or beyond the edges.
absl::Status PutLatent(RansEncoder& encoder, const FrequencyTable& table,
                       int64_t z, IdfCodeStats& stats) {
  int64_t s = z - kIdfLow, offset = -1;
  if (s <= 0) {
    offset = -s;
    s = 0;
  } else if (s >= kIdfSymbols - 1) {
    offset = s - (kIdfSymbols - 1);
    s = kIdfSymbols - 1;
  }
  FT_RETURN_IF_ERROR(EncodeSymbol(encoder, table, static_cast<int>(s)));
  stats.ideal_bits +=
      kIdfPrecisionBits -
      std::log2(static_cast<double>(table.freq(static_cast<int>(s))));
  if (offset >= 0) {
    if (offset >= (int64_t{1} << kIdfEscapeBits)) {
      return absl::InternalError(
          absl::StrCat("latent ", z, " beyond the escape range"));
    }
    FT_RETURN_IF_ERROR(
        encoder.Put(static_cast<uint32_t>(offset), 1, kIdfEscapeBits));
    stats.ideal_bits += kIdfEscapeBits;
    // An edge value itself is coded as offset 0: every latent at or beyond
    // an edge pays for the offset.
    stats.escapes += offset > 0;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> GetLatent(RansDecoder& decoder,
                                  const FrequencyTable& table) {
  FT_ASSIGN_OR_RETURN(int s, DecodeSymbol(decoder, table));
  int64_t value = kIdfLow + s;
  if (s == 0 || s == kIdfSymbols - 1) {
    const uint32_t offset = decoder.Peek(kIdfEscapeBits);
    FT_RETURN_IF_ERROR(decoder.Advance(offset, 1, kIdfEscapeBits));
    value += s == 0 ? -static_cast<int64_t>(offset) : offset;
  }
  return value;
}

}  // namespace

absl::StatusOr<IdfContainer> ParseIdfContainer(absl::string_view bytes) {
  const size_t size = bytes.size();
  if (size >= 8 && std::memcmp(bytes.data(), kMagic, 8) != 0) {
    return absl::InvalidArgumentError(
        "not an IDF container (bad magic; expected \"FTIDFC\\0\\1\")");
  }
  if (size < kIdfHeaderBytes + kTrailerBytes) {
    return absl::DataLossError(absl::StrCat("truncated IDF container: ", size,
                                            " bytes, header and checksum need ",
                                            kIdfHeaderBytes + kTrailerBytes));
  }
  IdfContainer c;
  c.version = static_cast<uint32_t>(GetLe(bytes, 8, 4));
  if (c.version == 1) {
    return absl::InvalidArgumentError(
        "IDF container version 1 (single-scale model) is no longer supported "
        "(this build reads version 2, the multi-scale flow's)");
  }
  if (c.version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported IDF container version ", c.version,
                     " (reads ", kVersion, ")"));
  }
  const uint64_t stream_bytes = GetLe(bytes, 32, 8);
  const uint64_t body = size - kIdfHeaderBytes - kTrailerBytes;
  if (stream_bytes > body) {
    return absl::DataLossError(
        absl::StrCat("truncated IDF container: header says ", stream_bytes,
                     " stream bytes, the file holds ", body));
  }
  if (stream_bytes < body) {
    return absl::DataLossError(
        absl::StrCat("IDF container has ", body - stream_bytes,
                     " trailing bytes after the stream and checksum"));
  }
  const uint32_t stored = static_cast<uint32_t>(GetLe(bytes, size - 4, 4));
  const uint32_t computed = Crc32(bytes.substr(0, size - 4));
  if (stored != computed) {
    return absl::DataLossError(
        absl::StrCat("IDF container checksum mismatch (stored ", stored,
                     ", computed ", computed, "): the file is corrupt"));
  }
  c.model_id = static_cast<uint32_t>(GetLe(bytes, 12, 4));
  c.count = static_cast<int64_t>(GetLe(bytes, 16, 4));
  const uint32_t channels = static_cast<uint32_t>(GetLe(bytes, 20, 4));
  c.height = static_cast<int64_t>(GetLe(bytes, 24, 4));
  c.width = static_cast<int64_t>(GetLe(bytes, 28, 4));
  if (channels != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IDF container: ", channels, " channels (only 1 is supported)"));
  }
  if (c.count < 1 || c.count > kIdfMaxImages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IDF container: image count ", c.count, " outside 1..", kIdfMaxImages));
  }
  if (c.height < 1 || c.height > 256 || c.width < 1 || c.width > 256) {
    return absl::InvalidArgumentError(absl::StrCat("IDF container: image size ",
                                                   c.height, "x", c.width,
                                                   " outside 1..256"));
  }
  c.stream = bytes.substr(kIdfHeaderBytes, stream_bytes);
  return c;
}

absl::StatusOr<IdfCodec> IdfCodec::Create(const IntegerDiscreteFlow& flow) {
  const IdfOptions& o = flow.options();
  IdfCodec codec;
  codec.height_ = o.height;
  codec.width_ = o.width;
  codec.components_ = o.components;
  // Model id: the canonical serialisation, parameters as float64.
  uint32_t crc = Crc32(o.ToJson().dump());
  for (const auto& [name, t] : flow.NamedParameters()) {
    crc = Crc32(name, crc);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double v = t[i];
      std::string le;
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      PutU64(le, bits);
      crc = Crc32(le, crc);
    }
  }
  codec.model_id_ = crc;
  auto copy_net = [](const IdfConvNet& net) {
    Net out;
    for (const auto& layer : net.layers()) {
      Conv c;
      c.out = layer->weight().dim(0);
      c.in = layer->weight().dim(1);
      c.w = layer->weight().ToVector();
      c.b = layer->bias().ToVector();
      out.push_back(std::move(c));
    }
    return out;
  };
  const int num_levels = static_cast<int>(o.levels.size());
  for (int l = 0; l < num_levels; ++l) {
    Level level;
    level.squeeze = o.levels[l].squeeze;
    level.shape = o.LevelShape(l);
    for (int k = 0; k < o.levels[l].couplings; ++k) {
      level.couplings.push_back(copy_net(flow.coupling(l, k)));
    }
    if (l + 1 < num_levels) level.prior = copy_net(flow.prior_net(l));
    codec.levels_.push_back(std::move(level));
  }
  const int64_t d = flow.prior_logits().dim(0);
  const int kc = o.components;
  const std::vector<double> logits = flow.prior_logits().ToVector();
  const std::vector<double> means = flow.prior_means().ToVector();
  const std::vector<double> log_scales = flow.prior_log_scales().ToVector();
  for (int64_t i = 0; i < d; ++i) {
    absl::StatusOr<FrequencyTable> table =
        MixtureTable(&logits[i * kc], &means[i * kc], &log_scales[i * kc], 1,
                     kc, kIdfMeanUnit, kIdfLogScaleUnit);
    if (!table.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "IDF final prior of latent ", i, ": ", table.status().message()));
    }
    codec.final_tables_.push_back(std::move(*table));
  }
  // Every f <= 2^18 - 767 (QuantizeCumulative gives each symbol >= 1).
  const double ln2 = DetLog(2.0);
  const double m = std::ldexp(1.0, kIdfPrecisionBits);
  codec.min_symbol_bits_ =
      -DetLog((m - (kIdfSymbols - 1)) / m) / ln2 +
      2.0 * DetLog(1.0 - std::ldexp(1.0, kIdfPrecisionBits - 31)) / ln2;
  return codec;
}

void IdfCodec::RunNet(const Net& net, std::vector<double> u, int64_t h,
                      int64_t w, std::vector<double>& out) {
  const int64_t hw = h * w;
  for (size_t l = 0; l < net.size(); ++l) {
    const Conv& conv = net[l];
    out.resize(conv.out * hw);
    for (int64_t o = 0; o < conv.out; ++o) {
      double* dst = out.data() + o * hw;
      std::fill(dst, dst + hw, conv.b[o]);
      for (int64_t i = 0; i < conv.in; ++i) {
        const double* src = u.data() + i * hw;
        for (int64_t p = 0; p < kIdfKernel; ++p) {
          for (int64_t q = 0; q < kIdfKernel; ++q) {
            const double wv =
                conv.w[((o * conv.in + i) * kIdfKernel + p) * kIdfKernel + q];
            const int64_t dy = p - kIdfKernel / 2, dx = q - kIdfKernel / 2;
            const int64_t x0 = std::max<int64_t>(0, -dx);
            const int64_t x1 = std::min<int64_t>(w, w - dx);
            for (int64_t y = std::max<int64_t>(0, -dy);
                 y < std::min<int64_t>(h, h - dy); ++y) {
              double* row = dst + y * w;
              const double* in = src + (y + dy) * w + dx;
              for (int64_t x = x0; x < x1; ++x) row[x] += wv * in[x];
            }
          }
        }
      }
    }
    if (l + 1 < net.size()) {
      for (double& v : out) v = v > 0.0 ? v : 0.0;
    }
    u.swap(out);
  }
  out.swap(u);
}

void IdfCodec::Couple(const Level& level, std::vector<int64_t>& v,
                      int sign) const {
  const IdfShape& s = level.shape;
  const int64_t hw = s.h * s.w, c2 = s.kept();
  const int num = static_cast<int>(level.couplings.size());
  std::vector<double> u, t;
  for (int i = 0; i < num; ++i) {
    const int k = sign > 0 ? i : num - 1 - i;
    const bool even = k % 2 == 0;
    const int64_t a0 = even ? 0 : c2, na = even ? c2 : s.c - c2;
    const int64_t b0 = even ? c2 : 0, nb = s.c - na;
    u.resize(na * hw);
    for (int64_t j = 0; j < na * hw; ++j) {
      u[j] = (static_cast<double>(v[a0 * hw + j]) - kIdfInputCenter) *
             kIdfInputScale;
    }
    RunNet(level.couplings[k], u, s.h, s.w, t);
    for (int64_t j = 0; j < nb * hw; ++j) {
      const double r = std::round(t[j]);
      // NaN-safe clamp (a NaN becomes -kIdfMaxShift).
      const int64_t shift = static_cast<int64_t>(
          r >= -kIdfMaxShift ? (r <= kIdfMaxShift ? r : kIdfMaxShift)
                             : -kIdfMaxShift);
      v[b0 * hw + j] += sign * shift;
    }
  }
}

absl::Status IdfCodec::ConditionalTables(
    const Level& level, const std::vector<int64_t>& kept,
    std::vector<FrequencyTable>& tables) const {
  const IdfShape& s = level.shape;
  const int64_t hw = s.h * s.w, f = s.factored(), kc = components_;
  std::vector<double> u(kept.size()), params;
  for (size_t j = 0; j < kept.size(); ++j) {
    u[j] = (static_cast<double>(kept[j]) - kIdfInputCenter) * kIdfInputScale;
  }
  RunNet(level.prior, std::move(u), s.h, s.w, params);
  tables.clear();
  for (int64_t ch = 0; ch < f; ++ch) {
    for (int64_t px = 0; px < hw; ++px) {
      // Output channel (p f + ch) K + c at pixel px.
      const double* l = params.data() + (0 * f + ch) * kc * hw + px;
      const double* m = params.data() + (1 * f + ch) * kc * hw + px;
      const double* g = params.data() + (2 * f + ch) * kc * hw + px;
      absl::StatusOr<FrequencyTable> table =
          MixtureTable(l, m, g, hw, static_cast<int>(kc), kIdfNetMeanUnit,
                       kIdfNetLogScaleUnit);
      if (!table.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("IDF prior of channel ", ch, ", pixel ", px, ": ",
                         table.status().message()));
      }
      tables.push_back(std::move(*table));
    }
  }
  return absl::OkStatus();
}

void IdfCodec::Run(absl::Span<const int64_t> x, absl::Span<int64_t> z,
                   std::vector<std::vector<int64_t>>* kept) const {
  std::vector<int64_t> v(x.begin(), x.end()), squeezed;
  const int num_levels = static_cast<int>(levels_.size());
  // Latent order: z_{L-1} first, then z_{L-2}, ..., z_0 at the end.
  int64_t end = dims();
  if (kept != nullptr) kept->assign(num_levels - 1, {});
  int64_t c = 1, h = height_, w = width_;
  for (int l = 0; l < num_levels; ++l) {
    const Level& level = levels_[l];
    if (level.squeeze) {
      const std::vector<int64_t> index = IdfSqueezeIndex(c, h, w);
      squeezed.resize(index.size());
      for (size_t q = 0; q < index.size(); ++q) squeezed[q] = v[index[q]];
      v.swap(squeezed);
    }
    const IdfShape& s = level.shape;
    Couple(level, v, +1);
    if (l + 1 == num_levels) {
      std::copy(v.begin(), v.end(), z.begin());
      break;
    }
    const int64_t kept_size = s.kept() * s.h * s.w;
    const int64_t size = s.size() - kept_size;
    std::copy(v.begin() + kept_size, v.end(), z.begin() + (end - size));
    end -= size;
    v.resize(kept_size);
    if (kept != nullptr) (*kept)[l] = v;
    c = s.kept();
    h = s.h;
    w = s.w;
  }
}

void IdfCodec::Forward(absl::Span<const int64_t> x,
                       absl::Span<int64_t> z) const {
  Run(x, z, nullptr);
}

absl::Status IdfCodec::InverseLevels(const NextLatents& next,
                                     absl::Span<int64_t> x) const {
  const int num_levels = static_cast<int>(levels_.size());
  std::vector<int64_t> v, zl, unsqueezed;
  v.resize(levels_.back().shape.size());
  FT_RETURN_IF_ERROR(next(num_levels - 1, {}, v));
  for (int l = num_levels - 1; l >= 0; --l) {
    const Level& level = levels_[l];
    const IdfShape& s = level.shape;
    if (l + 1 < num_levels) {
      zl.resize(s.factored() * s.h * s.w);
      FT_RETURN_IF_ERROR(next(l, v, zl));
      v.insert(v.end(), zl.begin(), zl.end());
    }
    Couple(level, v, -1);
    if (level.squeeze) {
      const std::vector<int64_t> index =
          IdfSqueezeIndex(s.c / 4, 2 * s.h, 2 * s.w);
      unsqueezed.resize(index.size());
      for (size_t q = 0; q < index.size(); ++q) unsqueezed[index[q]] = v[q];
      v.swap(unsqueezed);
    }
  }
  std::copy(v.begin(), v.end(), x.begin());
  return absl::OkStatus();
}

void IdfCodec::Inverse(absl::Span<const int64_t> z,
                       absl::Span<int64_t> x) const {
  int64_t offset = 0;
  const absl::Status done = InverseLevels(
      [&](int, const std::vector<int64_t>&, std::vector<int64_t>& zl) {
        std::copy(z.begin() + offset, z.begin() + offset + zl.size(),
                  zl.begin());
        offset += static_cast<int64_t>(zl.size());
        return absl::OkStatus();
      },
      x);
  FT_CHECK(done.ok(), "IdfCodec::Inverse: ", done.ToString());
}

absl::StatusOr<std::string> IdfCodec::Compress(const IdfImages& images,
                                               IdfCodeStats* stats) const {
  const int64_t d = dims();
  if (images.height != height_ || images.width != width_) {
    return absl::InvalidArgumentError(
        absl::StrCat("images are ", images.height, "x", images.width,
                     ", the model codes ", height_, "x", width_));
  }
  if (images.count < 1 || images.count > kIdfMaxImages ||
      static_cast<int64_t>(images.pixels.size()) != images.count * d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image count ", images.count, " (with ", images.pixels.size(),
        " pixels) outside 1..", kIdfMaxImages));
  }
  RansEncoder encoder;
  IdfCodeStats local;
  const int num_levels = static_cast<int>(levels_.size());
  std::vector<int64_t> x(d), z(d);
  std::vector<std::vector<int64_t>> kept;
  std::vector<FrequencyTable> tables;
  for (int64_t n = 0; n < images.count; ++n) {
    for (int64_t i = 0; i < d; ++i) x[i] = images.pixels[n * d + i];
    Run(x, absl::MakeSpan(z), &kept);
    int64_t offset = 0;
    for (const FrequencyTable& table : final_tables_) {
      FT_RETURN_IF_ERROR(PutLatent(encoder, table, z[offset++], local));
    }
    for (int l = num_levels - 2; l >= 0; --l) {
      FT_RETURN_IF_ERROR(ConditionalTables(levels_[l], kept[l], tables));
      for (const FrequencyTable& table : tables) {
        FT_RETURN_IF_ERROR(PutLatent(encoder, table, z[offset++], local));
      }
    }
  }
  const std::vector<uint8_t> stream = encoder.Finish();
  std::string out(kMagic, 8);
  PutU32(out, kVersion);
  PutU32(out, model_id_);
  PutU32(out, static_cast<uint32_t>(images.count));
  PutU32(out, 1);
  PutU32(out, static_cast<uint32_t>(height_));
  PutU32(out, static_cast<uint32_t>(width_));
  PutU64(out, stream.size());
  out.append(reinterpret_cast<const char*>(stream.data()), stream.size());
  PutU32(out, Crc32(out));
  if (stats != nullptr) *stats = local;
  return out;
}

absl::StatusOr<IdfImages> IdfCodec::Decompress(
    absl::string_view container) const {
  FT_ASSIGN_OR_RETURN(IdfContainer c, ParseIdfContainer(container));
  if (c.model_id != model_id_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the container was made with model id ", c.model_id,
        ", this model's id is ", model_id_, " (a different model file)"));
  }
  if (c.height != height_ || c.width != width_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the container holds ", c.height, "x", c.width,
                     " images, the model codes ", height_, "x", width_));
  }
  const int64_t d = dims();
  // Every symbol costs at least min_symbol_bits_; the stream holds at most
  // 8 S bits of them (rans.h: 8 B >= ideal + 32 + ...).
  const double need =
      32.0 + static_cast<double>(c.count) * d * min_symbol_bits_;
  if (!(min_symbol_bits_ > 0.0) ||
      need > 8.0 * static_cast<double>(c.stream.size())) {
    return absl::DataLossError(absl::StrCat(
        "IDF stream of ", c.stream.size(), " bytes is too short for ", c.count,
        " images (at least ", std::ceil(need / 8), " bytes)"));
  }
  FT_ASSIGN_OR_RETURN(
      RansDecoder decoder,
      RansDecoder::Create(absl::MakeConstSpan(
          reinterpret_cast<const uint8_t*>(c.stream.data()), c.stream.size())));
  IdfImages out;
  out.count = c.count;
  out.height = height_;
  out.width = width_;
  const int num_levels = static_cast<int>(levels_.size());
  std::vector<int64_t> x(d);
  std::vector<FrequencyTable> tables;
  auto next = [&](int l, const std::vector<int64_t>& kept,
                  std::vector<int64_t>& zl) -> absl::Status {
    if (l == num_levels - 1) {
      for (size_t i = 0; i < zl.size(); ++i) {
        FT_ASSIGN_OR_RETURN(zl[i], GetLatent(decoder, final_tables_[i]));
      }
      return absl::OkStatus();
    }
    if (absl::Status s = ConditionalTables(levels_[l], kept, tables); !s.ok()) {
      return absl::DataLossError(
          absl::StrCat("IDF stream decodes to latents whose prior is invalid "
                       "(the stream is corrupt): ",
                       s.message()));
    }
    for (size_t i = 0; i < zl.size(); ++i) {
      FT_ASSIGN_OR_RETURN(zl[i], GetLatent(decoder, tables[i]));
    }
    return absl::OkStatus();
  };
  for (int64_t n = 0; n < c.count; ++n) {
    FT_RETURN_IF_ERROR(InverseLevels(next, absl::MakeSpan(x)));
    for (int64_t i = 0; i < d; ++i) {
      if (x[i] < 0 || x[i] > 255) {
        return absl::DataLossError(
            absl::StrCat("IDF stream decodes to pixel value ", x[i], " (image ",
                         n, ", pixel ", i, "): the stream is corrupt"));
      }
      out.pixels.push_back(static_cast<uint8_t>(x[i]));
    }
  }
  absl::Status done = decoder.Finish();
  if (!done.ok()) {
    return absl::DataLossError(absl::StrCat(
        "IDF stream does not end after the last image: ", done.message()));
  }
  return out;
}

std::string IdxImageBytes(const IdfImages& images) {
  std::string out = {0, 0, 8, 3};
  for (int64_t v : {images.count, images.height, images.width}) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
  out.append(reinterpret_cast<const char*>(images.pixels.data()),
             images.pixels.size());
  return out;
}

}  // namespace flowtape::compression
