// IDX files (LeCun's MNIST format; also Fashion-MNIST), raw or gzipped.
//
// Layout: bytes 0-1 zero, byte 2 the element type (0x08 = unsigned byte, the
// only type accepted), byte 3 the number of dimensions d, then d big-endian
// uint32 sizes, then the elements in row-major order. Images: d = 3
// (magic 0x00000803), N x H x W. Labels: d = 1 (magic 0x00000801).
//
// LoadIdxImages returns a constant [N, 1, H, W] tensor of raw pixel values
// 0..255 (no scaling). Errors (InvalidArgument unless the file is missing):
// short header, wrong magic / element type / rank, zero sizes, a payload
// shorter or longer than the header says.
//
// Files: regular files only, at most max_bytes (default kIdxMaxBytes =
// 128 MiB; MNIST's training images are 47 MB) on disk and after
// decompression (read_file.h): a directory, FIFO, device or larger file is
// InvalidArgument naming the path. The tensor takes 8 bytes per pixel, so
// the limit also bounds it (1 GiB).
#ifndef FLOWTAPE_DATA_IDX_H_
#define FLOWTAPE_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

inline constexpr int64_t kIdxMaxBytes = int64_t{128} << 20;

absl::StatusOr<Tensor> LoadIdxImages(const std::string& path,
                                     int64_t max_bytes = kIdxMaxBytes);
absl::StatusOr<std::vector<int>> LoadIdxLabels(
    const std::string& path, int64_t max_bytes = kIdxMaxBytes);

// Parsers on bytes in memory (tests); `source` names them in messages.
absl::StatusOr<Tensor> ParseIdxImages(const std::string& bytes,
                                      const std::string& source);
absl::StatusOr<std::vector<int>> ParseIdxLabels(const std::string& bytes,
                                                const std::string& source);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_IDX_H_
