#include "io/json.h"

#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"

namespace flowtape::io {
namespace {

// Thrown by the parse callback to stop at the first structural problem.
struct Refusal {
  std::string message;
};

}  // namespace

std::string JsonTypeName(const Json& j) {
  if (j.is_number()) return "number";
  return j.type_name();
}

absl::StatusOr<Json> ParseJson(absl::string_view text,
                               const std::string& what) {
  // Per open container: the keys seen so far (objects) or nothing (arrays).
  std::vector<std::optional<std::set<std::string>>> open;
  auto check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    using E = Json::parse_event_t;
    if (depth > kMaxJsonDepth)
      throw Refusal{absl::StrCat("nesting deeper than ", kMaxJsonDepth)};
    switch (event) {
      case E::object_start:
        open.emplace_back(std::set<std::string>());
        break;
      case E::array_start:
        open.emplace_back(std::nullopt);
        break;
      case E::object_end:
      case E::array_end:
        if (!open.empty()) open.pop_back();
        break;
      case E::key:
        if (!open.empty() && open.back().has_value() &&
            !open.back()->insert(parsed.get<std::string>()).second)
          throw Refusal{absl::StrCat("duplicate key \"",
                                     parsed.get<std::string>(), "\"")};
        break;
      case E::value:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const Refusal& r) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", r.message));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not valid JSON (", e.what(), ")"));
  }
}

}  // namespace flowtape::io
