#include "nn/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <set>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "autodiff/status_macros.h"
#include "data/atomic_file.h"
#include "data/read_file.h"
#include "nn/layers.h"

namespace flowtape::nn {
namespace {

constexpr char kMagic[8] = {'F', 'T', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderBytes = 32;
constexpr char kOptimizerPrefix[] = "optimizer/";
constexpr char kBufferPrefix[] = "buffer/";
constexpr uint64_t kMaxElements = uint64_t{1} << 50;
constexpr double kMaxCounter = 9007199254740992.0;  // 2^53

// Version 1's checksum (see checkpoint.h): FNV-1a's loop from a
// non-standard offset basis.
uint64_t Version1Checksum(absl::string_view p) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : p) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t Crc32(absl::string_view p) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed at most 1 GiB at a time.
  while (!p.empty()) {
    const size_t n = std::min<size_t>(p.size(), size_t{1} << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(p.data()),
                static_cast<uInt>(n));
    p.remove_prefix(n);
  }
  return crc;
}

// ---- little-endian encoding ----
void PutU(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(v >> (8 * i)));
}

class Reader {
 public:
  explicit Reader(absl::string_view data) : d_(data) {}
  bool U(int bytes, uint64_t* v) {
    if (d_.size() - pos_ < static_cast<size_t>(bytes)) return false;
    *v = 0;
    for (int i = 0; i < bytes; ++i)
      *v |= uint64_t{static_cast<unsigned char>(d_[pos_ + i])} << (8 * i);
    pos_ += bytes;
    return true;
  }
  bool Bytes(uint64_t n, absl::string_view* s) {
    if (d_.size() - pos_ < n) return false;
    *s = d_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  size_t remaining() const { return d_.size() - pos_; }

 private:
  absl::string_view d_;
  size_t pos_ = 0;
};

std::string Encode(const NamedTensors& tensors, const Metadata& metadata) {
  std::string p;
  PutU(&p, metadata.size(), 8);
  for (const auto& [key, value] : metadata) {
    PutU(&p, key.size(), 4);
    p += key;
    PutU(&p, value.size(), 8);
    p += value;
  }
  PutU(&p, tensors.size(), 8);
  for (const auto& entry : tensors) {
    const std::string& name = entry.first;
    const Tensor& t = entry.second;  // (lambdas cannot capture bindings)
    PutU(&p, name.size(), 4);
    p += name;
    PutU(&p, t.dtype() == kFloat32 ? 0 : 1, 4);
    PutU(&p, t.rank(), 4);
    for (int64_t d : t.shape().dims()) PutU(&p, static_cast<uint64_t>(d), 8);
    VisitDType(t.dtype(), [&](auto zero) {
      using T = decltype(zero);
      using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
      const T* v = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        Bits bits;
        std::memcpy(&bits, &v[i], sizeof(T));
        PutU(&p, bits, sizeof(T));
      }
    });
  }
  return p;
}

absl::StatusOr<NamedTensors> Decode(const std::string& path, uint64_t version,
                                    absl::string_view payload,
                                    Metadata* metadata) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", path, "': malformed payload: ", what));
  };
  Reader r(payload);
  Metadata meta;
  uint64_t meta_count = 0;
  if (version >= 2 && !r.U(8, &meta_count)) return bad("no metadata count");
  for (uint64_t k = 0; k < meta_count; ++k) {
    uint64_t len;
    absl::string_view key, value;
    if (!r.U(4, &len) || !r.Bytes(len, &key))
      return bad(absl::StrCat("metadata entry ", k, ": key cut short"));
    if (key.empty()) return bad(absl::StrCat("metadata entry ", k, ": no key"));
    if (!r.U(8, &len) || !r.Bytes(len, &value))
      return bad(absl::StrCat("metadata '", key, "': value cut short"));
    if (!meta.emplace(std::string(key), std::string(value)).second)
      return bad(absl::StrCat("duplicate metadata key '", key, "'"));
  }
  uint64_t count;
  if (!r.U(8, &count)) return bad("no tensor count");
  NamedTensors out;
  std::set<std::string> seen;
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t len, rank, code = 1;
    absl::string_view name;
    if (!r.U(4, &len) || !r.Bytes(len, &name))
      return bad(absl::StrCat("entry ", k, ": name cut short"));
    std::string n(name);
    if (!seen.insert(n).second)
      return bad(absl::StrCat("duplicate name '", n, "'"));
    if (version >= 2 && (!r.U(4, &code) || code > 1))
      return bad(absl::StrCat("'", n, "': bad dtype code (0 = float32, ",
                              "1 = float64)"));
    const DType dtype = code == 0 ? kFloat32 : kFloat64;
    if (!r.U(4, &rank) || rank > 4)
      return bad(absl::StrCat("'", n, "': bad rank"));
    std::vector<int64_t> dims(rank);
    uint64_t numel = 1;
    for (uint64_t i = 0; i < rank; ++i) {
      uint64_t d;
      if (!r.U(8, &d)) return bad(absl::StrCat("'", n, "': dims cut short"));
      // Every dim (not only the product: a 0 dim hides the rest) <= 2^50.
      if (d > kMaxElements || (d != 0 && numel > kMaxElements / d))
        return bad(absl::StrCat("'", n, "': dim ", i, " = ", d,
                                " too large (bound 2^50 elements)"));
      dims[i] = static_cast<int64_t>(d);
      numel *= d;
    }
    if (numel > r.remaining() / DTypeSize(dtype))
      return bad(absl::StrCat("'", n, "': data cut short"));
    Tensor t = Tensor::Empty(Shape(dims), dtype);
    VisitDType(dtype, [&](auto zero) {
      using T = decltype(zero);
      T* v = t.mutable_data<T>();
      for (uint64_t i = 0; i < numel; ++i) {
        uint64_t bits = 0;
        r.U(sizeof(T), &bits);
        using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
        const Bits b = static_cast<Bits>(bits);
        std::memcpy(&v[i], &b, sizeof(T));
      }
    });
    out.emplace_back(std::move(n), t);
  }
  if (r.remaining() != 0)
    return bad(
        absl::StrCat(r.remaining(), " unread bytes after ", count, " tensors"));
  if (metadata != nullptr) *metadata = std::move(meta);
  return out;
}

// The domain of an entry's values (checkpoint.h).
enum class Domain { kFinite, kCounter, kNonNegative, kZeroOne };

Domain DomainOf(const std::string& name, const std::set<std::string>& masks) {
  if (name == "optimizer/step" || (absl::StartsWith(name, kOptimizerPrefix) &&
                                   absl::EndsWith(name, ".step")))
    return Domain::kCounter;
  if (absl::StartsWith(name, kOptimizerPrefix) &&
      absl::EndsWith(name, ".exp_avg_sq"))
    return Domain::kNonNegative;
  if (masks.count(name) > 0) return Domain::kZeroOne;
  return Domain::kFinite;
}

// "" when `v` lies in the domain (and converts to `dst` finitely), else why
// not.
std::string OutOfDomain(double v, Domain domain, DType dst) {
  if (!std::isfinite(v)) return "a non-finite value";
  if (dst == kFloat32 && std::fabs(v) > FLT_MAX)
    return "a value beyond float32's range";
  switch (domain) {
    case Domain::kCounter:
      if (v < 0 || v > kMaxCounter || v != std::floor(v))
        return "a counter that is not an integer in [0, 2^53]";
      break;
    case Domain::kNonNegative:
      if (v < 0) return "a negative second moment";
      break;
    case Domain::kZeroOne:
      if (v != 0 && v != 1) return "a mask entry other than 0 or 1";
      break;
    case Domain::kFinite:
      break;
  }
  return "";
}

double At(const Tensor& t, int64_t i) {
  return VisitDType(t.dtype(), [&](auto zero) -> double {
    return t.data<decltype(zero)>()[i];
  });
}

// Matches file entries to `want` (names under `prefix`) by name, shape and
// value domain; collects the copies. `owner` ("module", "optimizer") is for
// messages.
absl::Status Match(const std::string& source, const NamedTensors& want,
                   const std::string& prefix, const std::string& owner,
                   const std::map<std::string, Tensor>& file,
                   const std::set<std::string>& masks,
                   std::vector<std::pair<Tensor, Tensor>>* copies) {
  for (const auto& [name, dst] : want) {
    const std::string full = prefix + name;
    auto it = file.find(full);
    if (it == file.end())
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": missing '", full, "'",
          prefix == kBufferPrefix ? " (a module buffer: the file predates "
                                    "buffers or holds another model)"
                                  : ""));
    const Tensor& src = it->second;
    if (src.shape() != dst.shape())
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": '", full, "' has shape ", src.shape().ToString(),
          " in the file but ", dst.shape().ToString(), " in the ", owner));
    const Domain domain = DomainOf(full, masks);
    for (int64_t i = 0; i < src.numel(); ++i) {
      const double v = At(src, i);
      if (std::string why = OutOfDomain(v, domain, dst.dtype()); !why.empty())
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": '", full, "' holds ", why, " (", v, ") at entry ", i));
    }
    copies->emplace_back(dst, src);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteTensorFile(const std::string& path,
                             const NamedTensors& tensors,
                             const Metadata& metadata) {
  const std::string payload = Encode(tensors, metadata);
  std::string file(kMagic, 8);
  PutU(&file, kVersion, 4);
  PutU(&file, 0, 4);
  PutU(&file, payload.size(), 8);
  PutU(&file, Crc32(payload), 8);
  file += payload;

  absl::Status s = data::WriteFileAtomically(path, file);
  if (!s.ok())
    return absl::Status(s.code(), absl::StrCat("checkpoint ", s.message()));
  return absl::OkStatus();
}

absl::StatusOr<NamedTensors> ReadTensorFile(const std::string& path,
                                            Metadata* metadata) {
  absl::StatusOr<std::string> read =
      data::ReadFileMaybeGz(path, kCheckpointMaxBytes, "checkpoint");
  if (!read.ok()) {
    const bool missing = read.status().code() == absl::StatusCode::kNotFound;
    return absl::Status(read.status().code(),
                        absl::StrCat("checkpoint '", path,
                                     "': ", missing ? "file not found: " : "",
                                     read.status().message()));
  }
  const std::string& data = *read;
  auto fail = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat("checkpoint '", path, "': ", what));
  };
  if (data.size() < kHeaderBytes)
    return fail(absl::StrCat("truncated: ", data.size(),
                             " bytes, shorter than the 32-byte header"));
  if (std::memcmp(data.data(), kMagic, 8) != 0)
    return fail("bad magic (not a flowtape checkpoint)");
  Reader h(absl::string_view(data).substr(8, kHeaderBytes - 8));
  uint64_t version = 0, flags = 0, size = 0, sum = 0;
  h.U(4, &version);
  h.U(4, &flags);
  h.U(8, &size);
  h.U(8, &sum);
  if (version != 1 && version != 2)
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint '", path, "': unsupported version ", version,
                     " (this build reads versions 1 and 2)"));
  if (flags != 0)
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint '", path, "': reserved header flags are ",
                     flags, ", want 0 (written by a newer format?)"));
  const uint64_t have = data.size() - kHeaderBytes;
  if (have < size)
    return fail(absl::StrCat("truncated: header promises ", size,
                             " payload bytes, file has ", have));
  if (have > size)
    return fail(absl::StrCat(have - size, " trailing bytes after the payload"));
  absl::string_view payload = absl::string_view(data).substr(kHeaderBytes);
  if ((version == 1 ? Version1Checksum(payload) : Crc32(payload)) != sum)
    return fail("checksum mismatch (file is corrupt)");
  return Decode(path, version, payload, metadata);
}

absl::Status SaveCheckpoint(const std::string& path, const Module& module,
                            const Optimizer* optimizer,
                            const Metadata& metadata) {
  NamedTensors all = module.NamedParameters();
  for (auto& [name, t] : module.NamedBuffers())
    all.emplace_back(kBufferPrefix + name, t);
  if (optimizer != nullptr)
    for (auto& [name, t] : optimizer->NamedState())
      all.emplace_back(kOptimizerPrefix + name, t);
  return WriteTensorFile(path, all, metadata);
}

absl::Status RestoreFromTensors(const std::string& source,
                                const NamedTensors& entries, Module& module,
                                Optimizer* optimizer) {
  std::map<std::string, Tensor> file;
  for (const auto& [name, t] : entries)
    if (!file.emplace(name, t).second)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": duplicate name '", name, "'"));
  std::set<std::string> masks;
  for (const auto& [prefix, m] : module.NamedModules())
    if (dynamic_cast<const MaskedLinear*>(m) != nullptr)
      masks.insert(absl::StrCat(kBufferPrefix, prefix, "mask"));

  // Validate every entry first; copy only when all of them check out.
  std::vector<std::pair<Tensor, Tensor>> copies;
  const NamedTensors params = module.NamedParameters();
  const NamedTensors buffers = module.NamedBuffers();
  FT_RETURN_IF_ERROR(Match(source, params, "", "module", file, masks, &copies));
  FT_RETURN_IF_ERROR(
      Match(source, buffers, kBufferPrefix, "module", file, masks, &copies));
  NamedTensors state;
  if (optimizer != nullptr) {
    state = optimizer->NamedState();
    FT_RETURN_IF_ERROR(Match(source, state, kOptimizerPrefix, "optimizer", file,
                             masks, &copies));
  }
  std::set<std::string> known;
  for (const auto& [name, t] : params) known.insert(name);
  for (const auto& [name, t] : buffers) known.insert(kBufferPrefix + name);
  for (const auto& [name, t] : state) known.insert(kOptimizerPrefix + name);
  for (const auto& [name, t] : file) {
    const bool opt_entry = absl::StartsWith(name, kOptimizerPrefix);
    if (known.count(name) == 0 && !(opt_entry && optimizer == nullptr))
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": unknown name '", name, "' (not in the ",
          opt_entry                               ? "optimizer"
          : absl::StartsWith(name, kBufferPrefix) ? "module's buffers"
                                                  : "module",
          ")"));
  }
  // Values take the destination's dtype (checkpoint.h).
  for (auto& copy : copies) {
    Tensor& dst = copy.first;
    const Tensor& src = copy.second;
    VisitDType(dst.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* d = dst.mutable_data<T>();
      for (int64_t i = 0; i < src.numel(); ++i)
        d[i] = static_cast<T>(At(src, i));
    });
  }
  return absl::OkStatus();
}

absl::Status LoadCheckpoint(const std::string& path, Module& module,
                            Optimizer* optimizer) {
  FT_ASSIGN_OR_RETURN(const NamedTensors read, ReadTensorFile(path));
  return RestoreFromTensors(absl::StrCat("checkpoint '", path, "'"), read,
                            module, optimizer);
}

}  // namespace flowtape::nn
