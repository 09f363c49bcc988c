// Strict decimal numbers, as the text loaders (CSV, earth catalogues) read
// them.
//
//   number := [+-]? ( digits [ "." digits? ] | "." digits )
//             ( [eE] [+-]? digits )?
//
// Nothing else: no surrounding whitespace (callers strip it), no hex floats
// ("0x1p4"), no "inf"/"nan"/"infinity", no trailing characters, no empty
// text. The value must be exactly zero or a finite normal double: a literal
// above DBL_MAX ("1e999") is an overflow error, and a nonzero literal that
// would round to zero or to a subnormal ("1e-999", "1e-310") is an
// underflow error, never a silent 0 or a value with lost precision.
// Parsing is locale-independent (std::from_chars); the result is the
// correctly rounded double.
//
// Errors are InvalidArgument messages without a location (the caller
// prefixes file:line: column).
#ifndef FLOWTAPE_DATA_NUMBER_H_
#define FLOWTAPE_DATA_NUMBER_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flowtape::data {

absl::Status ParseDecimal(absl::string_view text, double* value);

// True if `text` has the grammar above (whether or not its value is in
// range).
bool IsDecimalSyntax(absl::string_view text);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_NUMBER_H_
