#include "nn/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace flowtape::nn {
namespace {

constexpr char kMagic[8] = {'F', 'T', 'C', 'K', 'P', 'T', '\0', '\1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 32;
constexpr char kOptimizerPrefix[] = "optimizer/";
constexpr char kBufferPrefix[] = "buffer/";
constexpr uint64_t kMaxElements = uint64_t{1} << 50;

uint64_t Fnv1a64(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

// ---- little-endian encoding ----
void PutU(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out->push_back(static_cast<char>(v >> (8 * i)));
}

class Reader {
 public:
  Reader(absl::string_view data) : d_(data) {}
  bool U(int bytes, uint64_t* v) {
    if (d_.size() - pos_ < static_cast<size_t>(bytes)) return false;
    *v = 0;
    for (int i = 0; i < bytes; ++i)
      *v |= uint64_t{static_cast<unsigned char>(d_[pos_ + i])} << (8 * i);
    pos_ += bytes;
    return true;
  }
  bool Bytes(size_t n, absl::string_view* s) {
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

std::string Encode(const NamedTensors& tensors) {
  std::string p;
  PutU(&p, tensors.size(), 8);
  for (const auto& [name, t] : tensors) {
    PutU(&p, name.size(), 4);
    p += name;
    PutU(&p, t.rank(), 4);
    for (int64_t d : t.shape().dims()) PutU(&p, static_cast<uint64_t>(d), 8);
    // float32 values widen exactly.
    for (double v : t.ToVector()) {
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      PutU(&p, bits, 8);
    }
  }
  return p;
}

absl::StatusOr<NamedTensors> Decode(const std::string& path,
                                    absl::string_view payload) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", path, "': malformed payload: ", what));
  };
  Reader r(payload);
  uint64_t count;
  if (!r.U(8, &count)) return bad("no tensor count");
  NamedTensors out;
  std::set<std::string> seen;
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t len, rank;
    absl::string_view name;
    if (!r.U(4, &len) || !r.Bytes(len, &name))
      return bad(absl::StrCat("entry ", k, ": name cut short"));
    std::string n(name);
    if (!seen.insert(n).second)
      return bad(absl::StrCat("duplicate name '", n, "'"));
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
    if (numel > r.remaining() / 8)
      return bad(absl::StrCat("'", n, "': data cut short"));
    Tensor t = Tensor::Empty(Shape(dims));
    double* v = t.mutable_data();
    for (uint64_t i = 0; i < numel; ++i) {
      uint64_t bits = 0;
      r.U(8, &bits);
      std::memcpy(&v[i], &bits, 8);
    }
    out.emplace_back(std::move(n), t);
  }
  if (r.remaining() != 0)
    return bad(
        absl::StrCat(r.remaining(), " unread bytes after ", count, " tensors"));
  return out;
}

absl::Status IoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat("checkpoint '", path, "': ", what,
                                          ": ", std::strerror(errno)));
}

std::string Dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Matches file entries to `want` (names under `prefix`) by name and shape;
// collects the copies. `owner` ("module", "optimizer") is for messages.
absl::Status Match(const std::string& path, const NamedTensors& want,
                   const std::string& prefix, const std::string& owner,
                   const std::map<std::string, Tensor>& file,
                   std::vector<std::pair<Tensor, Tensor>>* copies) {
  for (const auto& [name, dst] : want) {
    auto it = file.find(prefix + name);
    if (it == file.end())
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint '", path, "': missing '", prefix + name, "'",
          prefix == kBufferPrefix ? " (a module buffer: the file predates "
                                    "buffers or holds another model)"
                                  : ""));
    if (it->second.shape() != dst.shape())
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint '", path, "': '", prefix + name, "' has shape ",
          it->second.shape().ToString(), " in the file but ",
          dst.shape().ToString(), " in the ", owner));
    const double* v = it->second.data<double>();
    for (int64_t i = 0; i < it->second.numel(); ++i)
      if (!std::isfinite(v[i]))
        return absl::InvalidArgumentError(absl::StrCat(
            "checkpoint '", path, "': '", prefix + name,
            "' holds a non-finite value (", v[i], ") at entry ", i));
    copies->emplace_back(dst, it->second);
  }
  return absl::OkStatus();
}

bool HasPrefix(const std::string& name, absl::string_view prefix) {
  return absl::string_view(name).substr(0, prefix.size()) == prefix;
}

}  // namespace

absl::Status WriteTensorFile(const std::string& path,
                             const NamedTensors& tensors) {
  const std::string payload = Encode(tensors);
  std::string file(kMagic, 8);
  PutU(&file, kVersion, 4);
  PutU(&file, 0, 4);
  PutU(&file, payload.size(), 8);
  PutU(&file, Fnv1a64(payload.data(), payload.size()), 8);
  file += payload;

  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return IoError("cannot create temporary file " + tmp, path);
  size_t done = 0;
  while (done < file.size()) {
    ssize_t w = ::write(fd, file.data() + done, file.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      absl::Status s = IoError("write failed", path);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(w);
  }
  // mkstemp makes the file 0600; a checkpoint is an ordinary 0644 file.
  // The descriptor is closed whatever happens.
  absl::Status s;
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0)
    s = IoError("fchmod/fsync failed", path);
  if (::close(fd) != 0 && s.ok()) s = IoError("close failed", path);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = IoError("rename from " + tmp + " failed", path);
    ::unlink(tmp.c_str());
    return s;
  }
  // Make the rename itself durable.
  int dfd = ::open(Dir(path).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<NamedTensors> ReadTensorFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (errno == ENOENT)
      return absl::NotFoundError(
          absl::StrCat("checkpoint '", path, "': file not found"));
    return IoError("cannot open", path);
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  const bool err = std::ferror(f);
  std::fclose(f);
  if (err) return IoError("read failed", path);

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
  if (version != kVersion)
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint '", path, "': unsupported version ", version,
                     " (this build reads version ", kVersion, ")"));
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
  if (Fnv1a64(payload.data(), payload.size()) != sum)
    return fail("checksum mismatch (file is corrupt)");
  return Decode(path, payload);
}

absl::Status SaveCheckpoint(const std::string& path, const Module& module,
                            const Optimizer* optimizer) {
  NamedTensors all = module.NamedParameters();
  for (auto& [name, t] : module.NamedBuffers())
    all.emplace_back(kBufferPrefix + name, t);
  if (optimizer != nullptr)
    for (auto& [name, t] : optimizer->NamedState())
      all.emplace_back(kOptimizerPrefix + name, t);
  return WriteTensorFile(path, all);
}

absl::Status LoadCheckpoint(const std::string& path, Module& module,
                            Optimizer* optimizer) {
  absl::StatusOr<NamedTensors> read = ReadTensorFile(path);
  if (!read.ok()) return read.status();
  std::map<std::string, Tensor> file(read->begin(), read->end());

  // Validate every entry first; copy only when all of them check out.
  std::vector<std::pair<Tensor, Tensor>> copies;
  const NamedTensors params = module.NamedParameters();
  const NamedTensors buffers = module.NamedBuffers();
  absl::Status s = Match(path, params, "", "module", file, &copies);
  if (!s.ok()) return s;
  s = Match(path, buffers, kBufferPrefix, "module", file, &copies);
  if (!s.ok()) return s;
  NamedTensors state;
  if (optimizer != nullptr) {
    state = optimizer->NamedState();
    s = Match(path, state, kOptimizerPrefix, "optimizer", file, &copies);
    if (!s.ok()) return s;
  }
  std::set<std::string> known;
  for (const auto& [name, t] : params) known.insert(name);
  for (const auto& [name, t] : buffers) known.insert(kBufferPrefix + name);
  for (const auto& [name, t] : state) known.insert(kOptimizerPrefix + name);
  for (const auto& [name, t] : file) {
    const bool opt_entry = HasPrefix(name, kOptimizerPrefix);
    if (known.count(name) == 0 && !(opt_entry && optimizer == nullptr))
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint '", path, "': unknown name '", name, "' (not in the ",
          opt_entry                        ? "optimizer"
          : HasPrefix(name, kBufferPrefix) ? "module's buffers"
                                           : "module",
          ")"));
  }
  // Values take the destination's dtype (a float32 model's file holds
  // float32 values widened, so they round-trip exactly).
  for (auto& [dst, src] : copies) {
    const double* v = src.data<double>();
    VisitDType(dst.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* d = dst.mutable_data<T>();
      for (int64_t i = 0; i < src.numel(); ++i) d[i] = static_cast<T>(v[i]);
    });
  }
  return absl::OkStatus();
}

}  // namespace flowtape::nn
