// safetensors: Hugging Face's tensor file format, which PyTorch reads and
// writes (safetensors.torch.save_file / load_file), implemented here for
// float32 and float64 tensors of rank <= 4.
//
// Layout:
//   uint64 N             little-endian: the header's length in bytes
//   N bytes header       a JSON object (UTF-8):
//                          {"<name>": {"dtype": "F32" | "F64",
//                                      "shape": [d0, d1, ...],
//                                      "data_offsets": [begin, end]},
//                           ...,
//                           "__metadata__": {"<key>": "<string>", ...}}
//                        ("__metadata__" optional)
//   data buffer          each tensor's values, row-major, little-endian IEEE
//                        754, at bytes [begin, end) of the buffer (offsets
//                        relative to the buffer's start, 8 + N)
//
// Writing: tensors in the given order, back to back; the header is padded
// with spaces to a multiple of 8 bytes (so every float64 is 8-byte
// aligned, as Hugging Face's writer does); "__metadata__" only when there
// is metadata; the file is replaced atomically (data/atomic_file.h).
//
// Reading validates everything, returning InvalidArgument naming the file
// and the entry: the file (a regular file, at most kSafetensorsMaxBytes)
// holds at least 8 bytes; 2 <= N <= kSafetensorsMaxHeader and N <= the
// bytes after it; the header is JSON (io/json.h: no repeated key, no deep
// nesting) and an object; "__metadata__" an object of strings; every other
// entry (non-empty name) an object with exactly "dtype", "shape" and
// "data_offsets"; dtype "F32" or "F64" (any other safetensors dtype, e.g.
// "F16", "BF16", "I64", is refused by name); shape at most 4 non-negative
// integers (flowtape's ranks) with product <= 2^50; data_offsets two
// integers begin <= end <= the buffer's size with end - begin = the
// shape's element count x 4 or 8; and the tensors, taken in order of
// begin, tile the buffer exactly: no overlap, no gap, no trailing byte (the
// rules of the reference implementation). Values are returned bit for bit
// (NaN and Inf included: checking domains is the loader's business,
// torch_layout.h).
// Tensors come back in the order of their data in the buffer.
#ifndef FLOWTAPE_IO_SAFETENSORS_H_
#define FLOWTAPE_IO_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nn/optim.h"

namespace flowtape::io {

using Metadata = std::map<std::string, std::string>;

inline constexpr int64_t kSafetensorsMaxBytes = int64_t{1} << 34;  // 16 GiB
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;     // bytes

absl::Status WriteSafetensors(const std::string& path,
                              const nn::NamedTensors& tensors,
                              const Metadata& metadata = {});
absl::StatusOr<nn::NamedTensors> ReadSafetensors(const std::string& path,
                                                 Metadata* metadata = nullptr);

// The same on bytes in memory; `what` names them in messages.
std::string EncodeSafetensors(const nn::NamedTensors& tensors,
                              const Metadata& metadata = {});
absl::StatusOr<nn::NamedTensors> DecodeSafetensors(
    absl::string_view bytes, const std::string& what,
    Metadata* metadata = nullptr);

}  // namespace flowtape::io

#endif  // FLOWTAPE_IO_SAFETENSORS_H_
