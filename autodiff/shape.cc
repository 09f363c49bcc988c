#include "autodiff/shape.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_join.h"
#include "autodiff/check.h"

namespace flowtape {
namespace internal {
void CheckFailed(const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "flowtape check failed at %s:%d: %s\n", file, line,
               msg.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace internal

Shape::Shape(std::initializer_list<int64_t> dims)
    : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  FT_CHECK(dims.size() <= kMaxRank, "shape: rank ", dims.size(), " > ",
           kMaxRank);
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    FT_CHECK(dims[i] >= 0, "shape: negative dimension ", dims[i]);
    d_[i] = dims[i];
  }
}

int Shape::NormalizeAxis(int axis) const {
  int a = axis < 0 ? axis + rank_ : axis;
  FT_CHECK(a >= 0 && a < rank_, "axis ", axis, " out of range for shape ",
           ToString());
  return a;
}

Shape Shape::WithDim(int axis, int64_t size) const {
  int a = NormalizeAxis(axis);
  std::vector<int64_t> d = dims();
  if (size < 0) {
    d.erase(d.begin() + a);
  } else {
    d[a] = size;
  }
  return Shape(d);
}

std::string Shape::ToString() const {
  return absl::StrCat("[", absl::StrJoin(dims(), ", "), "]");
}

Shape BroadcastShapes(const char* op, const Shape& a, const Shape& b) {
  if (a == b) return a;
  int r = std::max(a.rank(), b.rank());
  std::vector<int64_t> out(r);
  for (int i = 0; i < r; ++i) {
    int ia = a.rank() - r + i, ib = b.rank() - r + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    FT_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a.ToString(),
             " and ", b.ToString(), " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return Shape(out);
}

}  // namespace flowtape
