// Status plumbing for fallible calls (Debian's Abseil 20220623 has no
// status macros of its own):
//
//   FT_RETURN_IF_ERROR(expr);        // expr: absl::Status; returns it if !ok
//   FT_ASSIGN_OR_RETURN(lhs, expr);  // expr: absl::StatusOr<T>; returns its
//                                    // status if !ok, else lhs = *value
//
// lhs may declare a variable (FT_ASSIGN_OR_RETURN(auto model, Make(...))).
// Both work in any function returning absl::Status or absl::StatusOr<U>.
#ifndef FLOWTAPE_AUTODIFF_STATUS_MACROS_H_
#define FLOWTAPE_AUTODIFF_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FT_RETURN_IF_ERROR(expr)                              \
  do {                                                        \
    if (::absl::Status ft_status_ = (expr); !ft_status_.ok()) \
      return ft_status_;                                      \
  } while (0)

#define FT_STATUS_CONCAT_INNER_(a, b) a##b
#define FT_STATUS_CONCAT_(a, b) FT_STATUS_CONCAT_INNER_(a, b)

#define FT_ASSIGN_OR_RETURN(lhs, expr)                                      \
  FT_ASSIGN_OR_RETURN_IMPL_(FT_STATUS_CONCAT_(ft_statusor_, __LINE__), lhs, \
                            expr)

#define FT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // FLOWTAPE_AUTODIFF_STATUS_MACROS_H_
