#include "compression/idf_files.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "compression/idf.h"
#include "data/atomic_file.h"
#include "data/idx.h"
#include "data/read_file.h"

namespace flowtape::compression {
namespace {

// Containers larger than this are refused before reading (1 GiB).
constexpr int64_t kContainerMaxBytes = int64_t{1} << 30;

}  // namespace

absl::StatusOr<IdfImages> ImagesFromTensor(const Tensor& images, int64_t first,
                                           int64_t count) {
  if (images.rank() != 4 || images.dim(1) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "images must be [N, 1, H, W], got ", images.shape().ToString()));
  }
  const int64_t n = images.dim(0);
  if (count < 0) count = n - first;
  if (first < 0 || first >= n || count < 1 || count > n - first) {
    return absl::InvalidArgumentError(
        absl::StrCat("image range [", first, ", ", first + count,
                     ") outside the file's ", n, " images"));
  }
  IdfImages out;
  out.count = count;
  out.height = images.dim(2);
  out.width = images.dim(3);
  const int64_t d = out.height * out.width;
  out.pixels.resize(count * d);
  for (int64_t i = 0; i < count * d; ++i) {
    const double v = images[first * d + i];
    if (!(v >= 0 && v <= 255 && v == std::floor(v))) {
      return absl::InvalidArgumentError(
          absl::StrCat("pixel ", i % d, " of image ", first + i / d, " is ", v,
                       ", not an integer 0..255"));
    }
    out.pixels[i] = static_cast<uint8_t>(v);
  }
  return out;
}

absl::StatusOr<CompressReport> CompressIdxFile(const std::string& model,
                                               const std::string& images,
                                               int64_t first, int64_t count,
                                               const std::string& out) {
  FT_ASSIGN_OR_RETURN(auto flow, LoadIdf(model));
  FT_ASSIGN_OR_RETURN(IdfCodec codec, IdfCodec::Create(*flow));
  FT_ASSIGN_OR_RETURN(Tensor all, data::LoadIdxImages(images));
  FT_ASSIGN_OR_RETURN(IdfImages batch, ImagesFromTensor(all, first, count));
  CompressReport report;
  FT_ASSIGN_OR_RETURN(std::string bytes, codec.Compress(batch, &report.stats));
  FT_RETURN_IF_ERROR(data::WriteFileAtomically(out, bytes));
  report.count = batch.count;
  report.height = batch.height;
  report.width = batch.width;
  report.bytes = static_cast<int64_t>(bytes.size());
  return report;
}

absl::StatusOr<IdfImages> DecompressToIdx(const std::string& model,
                                          const std::string& container,
                                          const std::string& out) {
  FT_ASSIGN_OR_RETURN(auto flow, LoadIdf(model));
  FT_ASSIGN_OR_RETURN(IdfCodec codec, IdfCodec::Create(*flow));
  FT_ASSIGN_OR_RETURN(
      std::string bytes,
      data::ReadFileMaybeGz(container, kContainerMaxBytes, "IDF container"));
  absl::StatusOr<IdfImages> images = codec.Decompress(bytes);
  if (!images.ok()) {
    return absl::Status(
        images.status().code(),
        absl::StrCat("'", container, "': ", images.status().message()));
  }
  FT_RETURN_IF_ERROR(data::WriteFileAtomically(out, IdxImageBytes(*images)));
  return images;
}

}  // namespace flowtape::compression
