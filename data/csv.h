// CSV loader: a numeric table -> Tensor [rows, cols].
//
// One record per line, fields separated by `delimiter`, optional header line
// (skipped), blank lines ignored, "\r\n" accepted, ".gz" files decompressed.
// Every field, stripped of surrounding spaces, must be a strict decimal
// number (data/number.h): no hex floats, "inf", "nan", empty fields or
// trailing characters, and no literal that overflows ("1e999") or underflows
// to zero or a subnormal ("1e-999"). Errors name the file, line and column:
// ragged rows (field count differs from the first row), unparsable,
// non-finite or out-of-range fields, or a file with no data rows (all
// InvalidArgument).
//
// Files: regular files only, at most options.max_bytes (default
// kCsvMaxBytes = 128 MiB) on disk and after decompression (read_file.h);
// NotFound when the file is missing, InvalidArgument for a directory, FIFO,
// device or an oversized file.
#ifndef FLOWTAPE_DATA_CSV_H_
#define FLOWTAPE_DATA_CSV_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

inline constexpr int64_t kCsvMaxBytes = int64_t{128} << 20;

struct CsvOptions {
  char delimiter = ',';
  bool header = false;               // skip the first non-blank line
  int64_t max_bytes = kCsvMaxBytes;  // file size and decompressed size
  // InvalidArgument unless max_bytes >= 1 and the delimiter is not a line
  // break, NUL or a character of a number (digits, '.', '+', '-', 'e',
  // 'E'). ParseCsv and LoadCsv call it.
  absl::Status Validate() const;
};

absl::StatusOr<Tensor> LoadCsv(const std::string& path,
                               const CsvOptions& options = {});
// Same, from text in memory; `source` names it in messages.
absl::StatusOr<Tensor> ParseCsv(const std::string& text,
                                const CsvOptions& options = {},
                                const std::string& source = "csv");

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_CSV_H_
