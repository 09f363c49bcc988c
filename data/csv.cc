#include "data/csv.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "autodiff/status_macros.h"
#include "data/number.h"
#include "data/read_file.h"

namespace flowtape::data {

absl::Status CsvOptions::Validate() const {
  if (max_bytes < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("csv: max_bytes = ", max_bytes, " must be >= 1"));
  const unsigned char d = static_cast<unsigned char>(delimiter);
  if (d == '\0' || d == '\n' || d == '\r' || absl::ascii_isdigit(d) ||
      absl::string_view(".+-eE").find(delimiter) != absl::string_view::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("csv: delimiter (character code ", static_cast<int>(d),
                     ") must not be a line break, NUL or part of a number"));
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ParseCsv(const std::string& text,
                                const CsvOptions& options,
                                const std::string& source) {
  FT_RETURN_IF_ERROR(options.Validate());
  std::vector<double> values;
  int64_t cols = -1, rows = 0, line_no = 0;
  bool skip_header = options.header;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (skip_header) {
      skip_header = false;
      continue;
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, options.delimiter);
    if (cols < 0) cols = static_cast<int64_t>(fields.size());
    if (static_cast<int64_t>(fields.size()) != cols)
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":", line_no, ": ragged row with ", fields.size(),
          " fields, expected ", cols, " (as in the first row)"));
    for (size_t c = 0; c < fields.size(); ++c) {
      double v = 0.0;
      if (absl::Status s =
              ParseDecimal(absl::StripAsciiWhitespace(fields[c]), &v);
          !s.ok())
        return absl::InvalidArgumentError(absl::StrCat(
            source, ":", line_no, ": column ", c + 1, ": ", s.message()));
      values.push_back(v);
    }
    ++rows;
  }
  if (rows == 0)
    return absl::InvalidArgumentError(absl::StrCat(source, ": no data rows"));
  return Tensor::FromVector(Shape{rows, cols}, values);
}

absl::StatusOr<Tensor> LoadCsv(const std::string& path,
                               const CsvOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  FT_ASSIGN_OR_RETURN(const std::string text,
                      ReadFileMaybeGz(path, options.max_bytes, "CSV"));
  return ParseCsv(text, options, path);
}

}  // namespace flowtape::data
