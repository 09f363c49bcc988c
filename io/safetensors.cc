#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"
#include "data/atomic_file.h"
#include "data/read_file.h"
#include "io/json.h"

namespace flowtape::io {
namespace {

constexpr char kMetadataKey[] = "__metadata__";
constexpr uint64_t kMaxElements = uint64_t{1} << 50;

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t GetU64(absl::string_view b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
  return v;
}

// A non-negative JSON integer.
bool Count(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  return false;  // negative integers, floats, anything else
}

struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> dims;
  uint64_t begin, end;
};

}  // namespace

std::string EncodeSafetensors(const nn::NamedTensors& tensors,
                              const Metadata& metadata) {
  Json header = Json::object();
  std::string data;
  for (const auto& entry : tensors) {
    const std::string& name = entry.first;
    const Tensor& t = entry.second;  // (lambdas cannot capture bindings)
    FT_CHECK(!name.empty() && name != kMetadataKey && !header.contains(name),
             "safetensors: tensor name '", name,
             "' is empty, reserved or repeated");
    const uint64_t begin = data.size();
    VisitDType(t.dtype(), [&](auto zero) {
      using T = decltype(zero);
      using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
      const T* v = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        Bits bits;
        std::memcpy(&bits, &v[i], sizeof(T));
        for (size_t k = 0; k < sizeof(T); ++k)
          data.push_back(static_cast<char>(bits >> (8 * k)));
      }
    });
    header[name] = {{"dtype", t.dtype() == kFloat32 ? "F32" : "F64"},
                    {"shape", t.shape().dims()},
                    {"data_offsets", {begin, uint64_t{data.size()}}}};
  }
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  PutU64(&out, text.size());
  return out + text + data;
}

absl::Status WriteSafetensors(const std::string& path,
                              const nn::NamedTensors& tensors,
                              const Metadata& metadata) {
  absl::Status s =
      data::WriteFileAtomically(path, EncodeSafetensors(tensors, metadata));
  if (!s.ok())
    return absl::Status(s.code(), absl::StrCat("safetensors ", s.message()));
  return absl::OkStatus();
}

absl::StatusOr<nn::NamedTensors> DecodeSafetensors(absl::string_view bytes,
                                                   const std::string& what,
                                                   Metadata* metadata) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
  };
  if (bytes.size() < 8)
    return bad(absl::StrCat(bytes.size(),
                            " bytes, shorter than the 8-byte "
                            "header length"));
  const uint64_t n = GetU64(bytes);
  if (n < 2 || n > kSafetensorsMaxHeader)
    return bad(absl::StrCat("header length ", n, " outside [2, ",
                            kSafetensorsMaxHeader, "]"));
  if (n > bytes.size() - 8)
    return bad(absl::StrCat("header length ", n, " exceeds the ",
                            bytes.size() - 8, " bytes after it"));
  FT_ASSIGN_OR_RETURN(
      const Json parsed,
      ParseJson(bytes.substr(8, n), absl::StrCat(what, ": header")));
  if (!parsed.is_object())
    return bad(absl::StrCat("header is a JSON ", JsonTypeName(parsed),
                            ", not an object"));
  const absl::string_view buffer = bytes.substr(8 + n);

  Metadata meta;
  std::vector<Entry> entries;
  for (const auto& item : parsed.items()) {
    const std::string& name = item.key();
    const Json& e = item.value();
    if (name == kMetadataKey) {
      if (!e.is_object()) return bad("__metadata__ is not an object");
      for (const auto& [key, value] : e.items()) {
        if (!value.is_string())
          return bad(absl::StrCat("__metadata__ '", key, "' is a ",
                                  JsonTypeName(value), ", not a string"));
        meta[key] = value.get<std::string>();
      }
      continue;
    }
    auto entry_bad = [&](const std::string& why) {
      return bad(absl::StrCat("'", name, "': ", why));
    };
    if (name.empty()) return bad("a tensor with an empty name");
    if (!e.is_object() || e.size() != 3 || !e.contains("dtype") ||
        !e.contains("shape") || !e.contains("data_offsets"))
      return entry_bad(
          "want an object of exactly dtype, shape and data_offsets");
    Entry t{name, kFloat64, {}, 0, 0};
    const Json& dtype = e["dtype"];
    if (!dtype.is_string()) return entry_bad("dtype is not a string");
    if (dtype == "F32") {
      t.dtype = kFloat32;
    } else if (dtype != "F64") {
      return entry_bad(absl::StrCat("dtype ", dtype.dump(),
                                    " is not supported (F32 and F64 are)"));
    }
    const Json& shape = e["shape"];
    if (!shape.is_array() || shape.size() > 4)
      return entry_bad(
          "shape is not an array of at most 4 integers "
          "(flowtape tensors have rank <= 4)");
    uint64_t numel = 1;
    for (const Json& d : shape) {
      uint64_t v;
      if (!Count(d, &v)) return entry_bad("a dim is not an integer >= 0");
      if (v > kMaxElements || (v != 0 && numel > kMaxElements / v))
        return entry_bad("shape has more than 2^50 elements");
      numel *= v;
      t.dims.push_back(static_cast<int64_t>(v));
    }
    const Json& offsets = e["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 ||
        !Count(offsets[0], &t.begin) || !Count(offsets[1], &t.end))
      return entry_bad("data_offsets is not two integers >= 0");
    if (t.begin > t.end || t.end > buffer.size())
      return entry_bad(absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                    "] outside the ", buffer.size(),
                                    "-byte data buffer"));
    if (t.end - t.begin != numel * DTypeSize(t.dtype))
      return entry_bad(absl::StrCat("data_offsets span ", t.end - t.begin,
                                    " bytes, the shape needs ",
                                    numel * DTypeSize(t.dtype)));
    entries.push_back(std::move(t));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  const Entry* previous = nullptr;
  for (const Entry& t : entries) {
    if (t.begin < at)
      return bad(absl::StrCat("'", t.name, "' overlaps '", previous->name,
                              "' in the data buffer"));
    if (t.begin > at)
      return bad(absl::StrCat("bytes [", at, ", ", t.begin,
                              ") of the data buffer belong to no tensor"));
    at = t.end;
    previous = &t;
  }
  if (at != buffer.size())
    return bad(absl::StrCat(buffer.size() - at,
                            " trailing bytes after the last tensor"));

  nn::NamedTensors out;
  for (const Entry& e : entries) {
    Tensor t = Tensor::Empty(Shape(e.dims), e.dtype);
    VisitDType(e.dtype, [&](auto zero) {
      using T = decltype(zero);
      using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
      T* v = t.mutable_data<T>();
      const unsigned char* p =
          reinterpret_cast<const unsigned char*>(buffer.data()) + e.begin;
      for (int64_t i = 0; i < t.numel(); ++i, p += sizeof(T)) {
        Bits bits = 0;
        for (size_t k = 0; k < sizeof(T); ++k)
          bits |= static_cast<Bits>(p[k]) << (8 * k);
        std::memcpy(&v[i], &bits, sizeof(T));
      }
    });
    out.emplace_back(e.name, t);
  }
  if (metadata != nullptr) *metadata = std::move(meta);
  return out;
}

absl::StatusOr<nn::NamedTensors> ReadSafetensors(const std::string& path,
                                                 Metadata* metadata) {
  const std::string what = absl::StrCat("safetensors '", path, "'");
  absl::StatusOr<std::string> bytes =
      data::ReadFileMaybeGz(path, kSafetensorsMaxBytes, "safetensors");
  if (!bytes.ok())
    return absl::Status(bytes.status().code(),
                        absl::StrCat(what, ": ", bytes.status().message()));
  return DecodeSafetensors(*bytes, what, metadata);
}

}  // namespace flowtape::io
