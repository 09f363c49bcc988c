// Reads a whole file into memory, transparently un-gzipping ".gz" (or any
// gzip-compressed) content via zlib; plain files are returned as they are.
// Errors: NotFound when the file cannot be opened, DataLoss for a corrupt or
// truncated gzip stream.
#ifndef FLOWTAPE_DATA_READ_FILE_H_
#define FLOWTAPE_DATA_READ_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace flowtape::data {

absl::StatusOr<std::string> ReadFileMaybeGz(const std::string& path);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_READ_FILE_H_
