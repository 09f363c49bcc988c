#include "compression/idf_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "compression/deterministic_math.h"
#include "compression/rans.h"
#include "compression/symbol_coding.h"
#include "zlib.h"

namespace flowtape::compression {
namespace {

constexpr char kMagic[8] = {'F', 'T', 'I', 'D', 'F', 'C', '\0', '\1'};
constexpr uint32_t kVersion = 1;
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
  for (int k = 0; k < o.couplings; ++k) {
    Coupling c;
    c.a = flow.conditioning(k);
    c.b = flow.updated(k);
    const auto params = flow.net(k).NamedParameters();  // weight, bias, ...
    for (size_t i = 0; i + 1 < params.size(); i += 2) {
      const Tensor& w = params[i].second;
      const Tensor& b = params[i + 1].second;
      Layer layer;
      layer.in = w.dim(0);
      layer.out = w.dim(1);
      layer.w = w.ToVector();
      layer.b = b.ToVector();
      c.layers.push_back(std::move(layer));
    }
    codec.couplings_.push_back(std::move(c));
  }
  const int64_t d = o.dims();
  const int kc = o.components;
  const std::vector<double> logits = flow.prior_logits().ToVector();
  const std::vector<double> means = flow.prior_means().ToVector();
  const std::vector<double> log_scales = flow.prior_log_scales().ToVector();
  uint32_t max_freq = 0;
  for (int64_t i = 0; i < d; ++i) {
    double top = logits[i * kc];
    for (int c = 1; c < kc; ++c) top = std::max(top, logits[i * kc + c]);
    std::vector<LogisticComponent> comps(kc);
    for (int c = 0; c < kc; ++c) {
      comps[c].weight = DetExp(logits[i * kc + c] - top);
      comps[c].mean = means[i * kc + c] * kIdfMeanUnit - kIdfLow;
      comps[c].scale = DetExp(log_scales[i * kc + c] * kIdfLogScaleUnit);
    }
    absl::StatusOr<std::vector<uint32_t>> freqs =
        DiscretizedLogisticMixtureFrequencies(comps, kIdfSymbols,
                                              kIdfPrecisionBits);
    if (!freqs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "IDF prior of latent ", i, ": ", freqs.status().message()));
    }
    for (uint32_t f : *freqs) max_freq = std::max(max_freq, f);
    FT_ASSIGN_OR_RETURN(
        FrequencyTable table,
        FrequencyTable::Create(std::move(*freqs), kIdfPrecisionBits));
    codec.tables_.push_back(std::move(table));
  }
  const double ln2 = DetLog(2.0);
  codec.min_symbol_bits_ =
      kIdfPrecisionBits - DetLog(static_cast<double>(max_freq)) / ln2 +
      2.0 * DetLog(1.0 - std::ldexp(1.0, kIdfPrecisionBits - 31)) / ln2;
  return codec;
}

void IdfCodec::Shifts(const Coupling& c, absl::Span<const int64_t> v,
                      std::vector<int64_t>& shift) const {
  std::vector<double> u(c.a.size()), h;
  for (size_t i = 0; i < c.a.size(); ++i) {
    u[i] = (static_cast<double>(v[c.a[i]]) - kIdfInputCenter) * kIdfInputScale;
  }
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const Layer& layer = c.layers[l];
    h = layer.b;
    for (int64_t i = 0; i < layer.in; ++i) {
      const double ui = u[i];
      if (ui == 0.0) continue;
      const double* row = layer.w.data() + i * layer.out;
      for (int64_t j = 0; j < layer.out; ++j) h[j] += ui * row[j];
    }
    if (l + 1 < c.layers.size()) {
      for (double& x : h) x = x > 0.0 ? x : 0.0;
    }
    u.swap(h);
  }
  shift.resize(c.b.size());
  for (size_t j = 0; j < c.b.size(); ++j) {
    const double r = std::round(u[j]);
    // NaN-safe clamp (a NaN becomes -kIdfMaxShift).
    shift[j] = static_cast<int64_t>(r >= -kIdfMaxShift
                                        ? (r <= kIdfMaxShift ? r : kIdfMaxShift)
                                        : -kIdfMaxShift);
  }
}

void IdfCodec::Forward(absl::Span<const int64_t> x,
                       absl::Span<int64_t> z) const {
  std::copy(x.begin(), x.end(), z.begin());
  std::vector<int64_t> shift;
  for (const Coupling& c : couplings_) {
    Shifts(c, z, shift);
    for (size_t j = 0; j < c.b.size(); ++j) z[c.b[j]] += shift[j];
  }
}

void IdfCodec::Inverse(absl::Span<const int64_t> z,
                       absl::Span<int64_t> x) const {
  std::copy(z.begin(), z.end(), x.begin());
  std::vector<int64_t> shift;
  for (auto c = couplings_.rbegin(); c != couplings_.rend(); ++c) {
    Shifts(*c, x, shift);
    for (size_t j = 0; j < c->b.size(); ++j) x[c->b[j]] -= shift[j];
  }
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
  std::vector<int64_t> x(d), z(d);
  for (int64_t n = 0; n < images.count; ++n) {
    for (int64_t i = 0; i < d; ++i) x[i] = images.pixels[n * d + i];
    Forward(x, absl::MakeSpan(z));
    for (int64_t i = 0; i < d; ++i) {
      const FrequencyTable& table = tables_[i];
      int64_t s = z[i] - kIdfLow, offset = -1;
      if (s <= 0) {
        offset = -s;
        s = 0;
      } else if (s >= kIdfSymbols - 1) {
        offset = s - (kIdfSymbols - 1);
        s = kIdfSymbols - 1;
      }
      FT_RETURN_IF_ERROR(EncodeSymbol(encoder, table, static_cast<int>(s)));
      local.ideal_bits +=
          kIdfPrecisionBits -
          std::log2(static_cast<double>(table.freq(static_cast<int>(s))));
      if (offset >= 0) {
        if (offset >= (int64_t{1} << kIdfEscapeBits)) {
          return absl::InternalError(
              absl::StrCat("latent ", z[i], " beyond the escape range"));
        }
        FT_RETURN_IF_ERROR(
            encoder.Put(static_cast<uint32_t>(offset), 1, kIdfEscapeBits));
        local.ideal_bits += kIdfEscapeBits;
        // An edge value itself is coded as offset 0: every latent at or
        // beyond an edge pays for the offset.
        local.escapes += offset > 0;
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
  std::vector<int64_t> x(d), z(d);
  for (int64_t n = 0; n < c.count; ++n) {
    for (int64_t i = 0; i < d; ++i) {
      FT_ASSIGN_OR_RETURN(int s, DecodeSymbol(decoder, tables_[i]));
      int64_t value = kIdfLow + s;
      if (s == 0 || s == kIdfSymbols - 1) {
        const uint32_t offset = decoder.Peek(kIdfEscapeBits);
        FT_RETURN_IF_ERROR(decoder.Advance(offset, 1, kIdfEscapeBits));
        value += s == 0 ? -static_cast<int64_t>(offset) : offset;
      }
      z[i] = value;
    }
    Inverse(z, absl::MakeSpan(x));
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
