// Checkpoints: a Module's parameters and buffers (and optionally an
// Optimizer's state) in a self-checking binary file.
//
// File format, version 1. All integers little-endian, doubles IEEE-754
// binary64 little-endian:
//   header (32 bytes)
//     char[8]  magic    "FTCKPT\0\1"
//     uint32   version  1
//     uint32   flags    0 (reserved; any other value is rejected)
//     uint64   payload  number of payload bytes that follow the header
//     uint64   checksum FNV-1a 64 of the payload bytes
//   payload
//     uint64   count
//     count x  { uint32 name_len; name_len bytes name (UTF-8);
//                uint32 rank (0..4); int64 dims[rank] (each <= 2^50, and
//                so is their product);
//                float64 data[prod(dims)] (row-major) }
// Names are Module::NamedParameters() names ("layer0.weight"); buffers
// (Module::NamedBuffers(): spectral-norm vectors, initialised flags) are
// stored under "buffer/<name>" and optimizer state (Optimizer::NamedState())
// under "optimizer/<name>". Buffers added entries, not a new layout, so the
// version stays 1: a file written before buffers were saved still loads into
// a module without buffers, and into one with buffers fails with a
// "missing 'buffer/...'" Status.
//
// Writes are atomic: the file is written to a temporary in the same
// directory, made mode 0644, fsync'ed and renamed over `path`, so a crash
// never leaves a half-written checkpoint under the final name.
//
// Loading validates everything before changing anything: on any error (file
// missing, truncated or with trailing bytes, bad magic, unsupported version,
// checksum mismatch, nonzero flags, malformed payload, duplicate / missing /
// unknown names, wrong shapes, NaN or Inf in a loaded value; buffers are
// checked exactly like parameters) it returns a Status naming the problem and
// leaves the module (parameters and buffers) and optimizer untouched.
// Optimizer entries in a file are ignored when no optimizer is passed; passing
// one requires its complete state in the file.
#ifndef FLOWTAPE_NN_CHECKPOINT_H_
#define FLOWTAPE_NN_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace flowtape::nn {

absl::Status SaveCheckpoint(const std::string& path, const Module& module,
                            const Optimizer* optimizer = nullptr);
absl::Status LoadCheckpoint(const std::string& path, Module& module,
                            Optimizer* optimizer = nullptr);

// The underlying named-tensor file (same format), for other state. Values
// round-trip bit for bit (NaN and Inf included; only LoadCheckpoint refuses
// non-finite values).
absl::Status WriteTensorFile(const std::string& path,
                             const NamedTensors& tensors);
absl::StatusOr<NamedTensors> ReadTensorFile(const std::string& path);

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_CHECKPOINT_H_
