#include "autodiff/dtype.h"

#include "absl/strings/str_cat.h"

namespace flowtape {

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "f32" || name == "float32") return DType::kFloat32;
  if (name == "f64" || name == "float64") return DType::kFloat64;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", name, "' (want f32, float32, f64 or float64)"));
}

}  // namespace flowtape
