// CSV loader: a numeric table -> Tensor [rows, cols].
//
// One record per line, fields separated by `delimiter`, optional header line
// (skipped), blank lines ignored, "\r\n" accepted, ".gz" files decompressed.
// Every field must parse completely as a finite double. Errors name the file,
// line and column: ragged rows (field count differs from the first row),
// unparsable fields, NaN or infinite values, or a file with no data rows
// (all InvalidArgument; NotFound when the file is missing).
#ifndef FLOWTAPE_DATA_CSV_H_
#define FLOWTAPE_DATA_CSV_H_

#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

struct CsvOptions {
  char delimiter = ',';
  bool header = false;  // skip the first non-blank line
};

absl::StatusOr<Tensor> LoadCsv(const std::string& path,
                               const CsvOptions& options = {});
// Same, from text in memory; `source` names it in messages.
absl::StatusOr<Tensor> ParseCsv(const std::string& text,
                                const CsvOptions& options = {},
                                const std::string& source = "csv");

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_CSV_H_
