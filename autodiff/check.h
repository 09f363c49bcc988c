// FT_CHECK: fail loudly on programming errors (wrong shapes in an op, stale
// tensors). Prints the message with file:line and aborts. Recoverable problems
// (bad files, bad user parameters) use absl::Status instead.
#ifndef FLOWTAPE_AUTODIFF_CHECK_H_
#define FLOWTAPE_AUTODIFF_CHECK_H_

#include <string>

#include "absl/strings/str_cat.h"

namespace flowtape::internal {
[[noreturn]] void CheckFailed(const char* file, int line,
                              const std::string& msg);
}  // namespace flowtape::internal

// Usage: FT_CHECK(a.shape() == b.shape(), "mul: ", a.shape().ToString(), ...);
#define FT_CHECK(cond, ...)                                           \
  do {                                                                \
    if (!(cond))                                                      \
      ::flowtape::internal::CheckFailed(__FILE__, __LINE__,           \
                                        ::absl::StrCat(__VA_ARGS__)); \
  } while (0)

#endif  // FLOWTAPE_AUTODIFF_CHECK_H_
