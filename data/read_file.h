// Reads a whole file into memory, transparently un-gzipping gzip-compressed
// content (".gz" or any gzip stream) via zlib; plain files are returned as
// they are.
//
// Only regular files are read: a directory, FIFO, socket or device
// (/dev/zero, /dev/stdin) is refused before any byte is read (the file is
// opened non-blocking, so a FIFO never blocks). `max_bytes` bounds both the
// size of the file on disk and the number of bytes it decompresses to
// (a gzip bomb stops at max_bytes + 1 decompressed bytes); every loader passes
// its format's documented limit (data/csv.h, data/idx.h, data/earth.h).
//
// Errors name the path: when the file cannot be opened or stat'ed, the
// errno's code and text (absl::ErrnoToStatus: NotFound "cannot open p: No
// such file or directory", PermissionDenied "...: Permission denied"),
// InvalidArgument for a file that is not regular or is
// over the limit (`what` names the format in the message, e.g. "CSV"),
// DataLoss for a corrupt or truncated gzip stream.
#ifndef FLOWTAPE_DATA_READ_FILE_H_
#define FLOWTAPE_DATA_READ_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace flowtape::data {

absl::StatusOr<std::string> ReadFileMaybeGz(const std::string& path,
                                            int64_t max_bytes,
                                            const std::string& what = "data");

// "a directory", "a FIFO", ... for a non-regular file at `path`; "" for a
// regular file or one that cannot be stat'ed.
std::string NonRegularKind(const std::string& path);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_READ_FILE_H_
