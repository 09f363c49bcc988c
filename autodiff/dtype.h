// DType: the element type of a Tensor, float32 or float64.
//
// Every tensor carries its dtype; an op's inputs must share one (mixing is a
// loud programming error naming the op and both dtypes; Cast converts, with
// its gradient). Factories default to float64, the precision of gradient
// checks; a model picks its dtype when it is built (Module::To).
//
// VisitDType(d, f) calls f(T{}) with T = float or double, the C++ type of d:
// the one place kernels branch on the dtype.
//   VisitDType(x.dtype(), [&](auto zero) {
//     using T = decltype(zero);
//     const T* p = x.data<T>(); ...
//   });
#ifndef FLOWTAPE_AUTODIFF_DTYPE_H_
#define FLOWTAPE_AUTODIFF_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flowtape {

enum class DType : uint8_t { kFloat32 = 0, kFloat64 = 1 };
inline constexpr DType kFloat32 = DType::kFloat32;
inline constexpr DType kFloat64 = DType::kFloat64;

inline const char* DTypeName(DType d) {
  return d == DType::kFloat32 ? "float32" : "float64";
}
inline size_t DTypeSize(DType d) { return d == DType::kFloat32 ? 4 : 8; }

// "f32" / "float32" / "f64" / "float64"; InvalidArgument otherwise.
absl::StatusOr<DType> ParseDType(absl::string_view name);

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kFloat64;
};
template <typename T>
inline constexpr DType kDTypeOf = DTypeOf<T>::value;

template <typename F>
decltype(auto) VisitDType(DType d, F&& f) {
  if (d == DType::kFloat32) return f(float{});
  return f(double{});
}

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_DTYPE_H_
