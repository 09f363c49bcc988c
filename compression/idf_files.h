// The flowtape-compress / flowtape-decompress commands as functions: a model
// file (idf.h's SaveIdf) and MNIST-style IDX images (data/idx.h) to an IDF
// container (idf_codec.h) and back.
//
//   CompressIdxFile: images [first, first + count) of the IDX file (count -1:
//     to the end), integers 0..255 of the model's H x W, coded and written
//     atomically (data/atomic_file.h) to `out`.
//   DecompressToIdx: the container's images, written as an IDX file
//     (magic 0x00000803, N x H x W, raw bytes): byte-identical to the IDX file
//     of those images alone.
// Errors are the loaders' and the codec's Status (the path in the message);
// InvalidArgument for a range outside the file, a shape that is not the
// model's, or pixels that are not integers 0..255.

#ifndef FLOWTAPE_COMPRESSION_IDF_FILES_H_
#define FLOWTAPE_COMPRESSION_IDF_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "compression/idf_codec.h"

namespace flowtape::compression {

struct CompressReport {
  int64_t count = 0, height = 0, width = 0;
  int64_t bytes = 0;  // the container, headers included
  IdfCodeStats stats;
  double bits_per_dim() const {
    return 8.0 * bytes / (static_cast<double>(count) * height * width);
  }
};

// Rows [first, first + count) (count -1: to the end) of images [N, 1, H, W].
absl::StatusOr<IdfImages> ImagesFromTensor(const Tensor& images, int64_t first,
                                           int64_t count);

absl::StatusOr<CompressReport> CompressIdxFile(const std::string& model,
                                               const std::string& images,
                                               int64_t first, int64_t count,
                                               const std::string& out);
absl::StatusOr<IdfImages> DecompressToIdx(const std::string& model,
                                          const std::string& container,
                                          const std::string& out);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_IDF_FILES_H_
