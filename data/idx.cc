#include "data/idx.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/status_macros.h"
#include "data/read_file.h"

namespace flowtape::data {
namespace {

// Validates the header for `rank` dimensions of unsigned bytes; returns the
// sizes. The payload must be exactly prod(sizes) bytes.
absl::StatusOr<std::vector<int64_t>> ParseHeader(const std::string& b, int rank,
                                                 const std::string& source) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  if (b.size() < 4)
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": too short for an IDX header (", b.size(), " bytes)"));
  if (byte(0) != 0 || byte(1) != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        ": bad IDX magic (first two bytes must be zero); not an IDX "
        "file?"));
  if (byte(2) != 0x08)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": IDX element type 0x", absl::Hex(byte(2)),
                     " is not unsigned byte (0x08)"));
  if (byte(3) != rank)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": IDX has ", byte(3), " dimensions, expected ",
                     rank, rank == 3 ? " (images N x H x W)" : " (labels N)"));
  size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (b.size() < header)
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": truncated IDX header"));
  const int64_t payload = static_cast<int64_t>(b.size() - header);
  std::vector<int64_t> dims;
  int64_t total = 1;
  for (int k = 0; k < rank; ++k) {
    size_t o = 4 + 4 * k;
    int64_t d = (int64_t{byte(o)} << 24) | (int64_t{byte(o + 1)} << 16) |
                (byte(o + 2) << 8) | byte(o + 3);
    if (d == 0)
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": IDX dimension ", k, " is zero"));
    dims.push_back(d);
    if (d > payload / total)  // total * d > payload, without overflow
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": IDX header dimension ", k, " = ", d,
                       " makes more elements than the ", payload,
                       " payload bytes (truncated file or corrupt header)"));
    total *= d;
  }
  if (payload != total)
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": IDX payload has ", payload, " bytes but the header [",
        absl::StrJoin(dims, " x "), "] needs ", total,
        payload < total ? " (truncated file)" : " (trailing bytes)"));
  return dims;
}

}  // namespace

absl::StatusOr<Tensor> ParseIdxImages(const std::string& bytes,
                                      const std::string& source) {
  FT_ASSIGN_OR_RETURN(const std::vector<int64_t> dims,
                      ParseHeader(bytes, 3, source));
  const int64_t n = dims[0], h = dims[1], w = dims[2];
  Tensor t = Tensor::Empty(Shape{n, 1, h, w});
  double* d = t.mutable_data<double>();
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(bytes.data()) + 16;
  for (int64_t i = 0; i < n * h * w; ++i) d[i] = p[i];
  return t;
}

absl::StatusOr<std::vector<int>> ParseIdxLabels(const std::string& bytes,
                                                const std::string& source) {
  FT_ASSIGN_OR_RETURN(const std::vector<int64_t> dims,
                      ParseHeader(bytes, 1, source));
  std::vector<int> labels(dims[0]);
  for (size_t i = 0; i < labels.size(); ++i)
    labels[i] = static_cast<unsigned char>(bytes[8 + i]);
  return labels;
}

absl::StatusOr<Tensor> LoadIdxImages(const std::string& path,
                                     int64_t max_bytes) {
  FT_ASSIGN_OR_RETURN(const std::string bytes,
                      ReadFileMaybeGz(path, max_bytes, "IDX"));
  return ParseIdxImages(bytes, path);
}

absl::StatusOr<std::vector<int>> LoadIdxLabels(const std::string& path,
                                               int64_t max_bytes) {
  FT_ASSIGN_OR_RETURN(const std::string bytes,
                      ReadFileMaybeGz(path, max_bytes, "IDX"));
  return ParseIdxLabels(bytes, path);
}

}  // namespace flowtape::data
