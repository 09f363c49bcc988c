// FT_RETURN_IF_ERROR / FT_ASSIGN_OR_RETURN: early return of the first error,
// values passed through otherwise.
#include "autodiff/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace flowtape {
namespace {

absl::Status FailIf(bool fail) {
  return fail ? absl::InvalidArgumentError("bad") : absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<int>> MakeIf(bool fail, int v) {
  if (fail) return absl::NotFoundError("none");
  return std::make_unique<int>(v);
}

absl::StatusOr<int> Chain(bool fail1, bool fail2, int* steps) {
  FT_RETURN_IF_ERROR(FailIf(fail1));
  ++*steps;
  FT_ASSIGN_OR_RETURN(std::unique_ptr<int> a, MakeIf(fail2, 20));  // move-only
  ++*steps;
  FT_ASSIGN_OR_RETURN(auto b, MakeIf(false, 22));  // two on one function
  return *a + *b;
}

TEST(StatusMacros, ReturnTheFirstErrorAndPassValuesOn) {
  int steps = 0;
  EXPECT_EQ(*Chain(false, false, &steps), 42);
  EXPECT_EQ(steps, 2);
  steps = 0;
  absl::StatusOr<int> e1 = Chain(true, false, &steps);
  EXPECT_EQ(e1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(steps, 0);
  absl::StatusOr<int> e2 = Chain(false, true, &steps);
  EXPECT_EQ(e2.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(steps, 1);
}

}  // namespace
}  // namespace flowtape
