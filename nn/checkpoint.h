// Checkpoints: a Module's parameters and buffers (and optionally an
// Optimizer's state) in a self-checking binary file, with optional string
// metadata beside the tensors.
//
// File format, version 2 (written). All integers little-endian, floats
// IEEE-754 little-endian:
//   header (32 bytes)
//     char[8]  magic    "FTCKPT\0\1"
//     uint32   version  2
//     uint32   flags    0 (reserved; any other value is rejected)
//     uint64   payload  number of payload bytes that follow the header
//     uint64   checksum CRC-32 (zlib's crc32: ISO-HDLC / IEEE 802.3,
//                       polynomial 0x04C11DB7 reflected, init and xorout
//                       0xFFFFFFFF) of the payload bytes, in the low 32 bits;
//                       the high 32 bits are 0
//   payload
//     uint64   meta_count
//     meta_count x { uint32 key_len; key (UTF-8, non-empty, unique);
//                    uint64 value_len; value bytes }
//     uint64   count
//     count x  { uint32 name_len; name_len bytes name (UTF-8, unique);
//                uint32 dtype (0 = float32, 1 = float64);
//                uint32 rank (0..4); int64 dims[rank] (each <= 2^50, and
//                so is their product);
//                data[prod(dims)] in dtype (4 or 8 bytes each, row-major) }
// CRC-32 rather than a 64-bit hash: it detects every burst error of up to
// 32 bits and every odd number of flipped bits (guarantees a hash lacks),
// the file's integrity needs no more (it is not a signature), and every
// language has it (Python: zlib.crc32(payload)).
//
// Version 1 (read, never written): the same header with version 1 and the
// checksum "FNV-1a with offset basis 1469598103934665603" (prime
// 1099511628211) of the payload: a non-standard variant, since standard
// FNV-1a 64 starts from 14695981039346656037; a standard FNV reader rejects
// every version-1 file. Its payload has no metadata and no dtype field:
//     uint64 count; count x { uint32 name_len; name; uint32 rank;
//                             int64 dims[rank]; float64 data[prod(dims)] }
// Version-1 files load into either dtype.
//
// Names are Module::NamedParameters() names ("layer0.weight"); buffers
// (Module::NamedBuffers(): spectral-norm vectors, initialised flags) are
// stored under "buffer/<name>" and optimizer state (Optimizer::NamedState())
// under "optimizer/<name>". Each tensor is stored in its own dtype, so a
// float32 model's file holds float32 values.
//
// Loading converts each value to the dtype of the tensor it lands in: a
// float32 file into a float64 model is exact; a float64 file into a float32
// model rounds to nearest (and a value beyond float32's range, |v| > 3.4e38,
// is refused rather than turned into Inf).
//
// Writes are atomic (data/atomic_file.h): a temporary
// "<path>.tmp.<pid>.XXXXXX" in the same directory, fsync'ed and renamed over
// `path`, so a crash never leaves a half-written checkpoint under the final
// name; the file is mode 0644. A process killed mid-save leaves its
// temporary behind; the next successful save of the same path removes every
// stale one: a temporary of this path whose <pid> is not a live process on
// this machine and whose flock nobody holds. Temporaries of live processes
// and files of other paths are left alone.
//
// Loading validates everything before changing anything: on any error (file
// missing, not a regular file, over kCheckpointMaxBytes, truncated or with
// trailing bytes, bad magic, unsupported version, checksum mismatch, nonzero
// flags, malformed payload, duplicate / missing / unknown names, wrong
// shapes, a value outside its domain) it returns a Status naming the problem
// and leaves the module (parameters and buffers) and optimizer untouched.
// Value domains: every value finite (and within the destination dtype's
// range); optimizer counters ("step", "<param>.step") integers in
// [0, 2^53] (beyond 2^53 a float64 counter no longer counts, and
// step_count() converts it to int64); Adam's "<param>.exp_avg_sq" >= 0;
// an nn::MaskedLinear's "mask" entries 0 or 1.
// Optimizer entries in a file are ignored when no optimizer is passed;
// passing one requires its complete state in the file. A gzip-compressed
// checkpoint is read transparently (data/read_file.h).
#ifndef FLOWTAPE_NN_CHECKPOINT_H_
#define FLOWTAPE_NN_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace flowtape::nn {

// String entries stored beside the tensors (version 2).
using Metadata = std::map<std::string, std::string>;

// Files (on disk, and after gzip decompression) above this are refused.
inline constexpr int64_t kCheckpointMaxBytes = int64_t{1} << 34;  // 16 GiB

absl::Status SaveCheckpoint(const std::string& path, const Module& module,
                            const Optimizer* optimizer = nullptr,
                            const Metadata& metadata = {});
absl::Status LoadCheckpoint(const std::string& path, Module& module,
                            Optimizer* optimizer = nullptr);

// The underlying named-tensor file (same format), for other state. Values
// round-trip bit for bit in their dtype (NaN and Inf included; only loading
// into a module refuses values outside their domain). `metadata`, when
// given, receives the file's metadata (empty for version 1).
absl::Status WriteTensorFile(const std::string& path,
                             const NamedTensors& tensors,
                             const Metadata& metadata = {});
absl::StatusOr<NamedTensors> ReadTensorFile(const std::string& path,
                                            Metadata* metadata = nullptr);

// LoadCheckpoint's matching and checks on entries already read (names as in
// the file: "buffer/...", "optimizer/..."); `source` starts every message
// ("checkpoint 'run.ckpt'").
absl::Status RestoreFromTensors(const std::string& source,
                                const NamedTensors& entries, Module& module,
                                Optimizer* optimizer = nullptr);

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_CHECKPOINT_H_
