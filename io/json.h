// Strict JSON for outside input (model descriptions, safetensors headers),
// on nlohmann::json (Debian nlohmann-json3-dev).
//
// ParseJson accepts RFC 8259 JSON text and refuses, with InvalidArgument
// "<what>: ..." naming the problem: syntax errors (with nlohmann's byte
// position), invalid UTF-8 in strings, numbers beyond float64's range, an
// object that repeats a key (naming the key: nlohmann would keep the last
// one silently), and nesting deeper than kMaxJsonDepth. The parser itself
// is iterative, so no input can exhaust the stack.
#ifndef FLOWTAPE_IO_JSON_H_
#define FLOWTAPE_IO_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace flowtape::io {

using Json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

absl::StatusOr<Json> ParseJson(absl::string_view text, const std::string& what);

// The JSON type name of `j` ("object", "array", "string", "number",
// "boolean", "null") for messages.
std::string JsonTypeName(const Json& j);

}  // namespace flowtape::io

#endif  // FLOWTAPE_IO_JSON_H_
