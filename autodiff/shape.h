// Shape: the dimensions of a dense row-major tensor of rank 0..4.
//
// Conventions: rank 0 is a scalar (numel 1); a batch of vectors is [N, D];
// images are [N, C, H, W]. Negative axis indices count from the back, as in
// NumPy. Stored inline (no heap), so copying a Shape is a few words.
#ifndef FLOWTAPE_AUTODIFF_SHAPE_H_
#define FLOWTAPE_AUTODIFF_SHAPE_H_

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace flowtape {

class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int rank() const { return rank_; }
  int64_t operator[](int axis) const {
    return axis >= 0 && axis < rank_ ? d_[axis] : d_[NormalizeAxis(axis)];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[i];
    return n;
  }
  // Maps a possibly negative axis into [0, rank); fails loudly if out of range.
  int NormalizeAxis(int axis) const;
  std::vector<int64_t> dims() const { return {d_.begin(), d_.begin() + rank_}; }
  // This shape with `axis` set to `size` (or removed when size < 0).
  Shape WithDim(int axis, int64_t size) const;
  std::string ToString() const;  // e.g. "[2, 3]"

  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (d_[i] != o.d_[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::array<int64_t, kMaxRank> d_{};
  int rank_ = 0;
};

// NumPy broadcast of two shapes; fails loudly naming `op` and both shapes.
Shape BroadcastShapes(const char* op, const Shape& a, const Shape& b);

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_SHAPE_H_
