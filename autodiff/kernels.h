// Internal: loops shared by the op files (broadcast iteration, reductions),
// templated on the element type T (float or double). Not part of the public
// API; op_kit.h builds MapUnary / MapBinary on them.
#ifndef FLOWTAPE_AUTODIFF_KERNELS_H_
#define FLOWTAPE_AUTODIFF_KERNELS_H_

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstdint>

#include "autodiff/shape.h"

// GCC's -O2 vectorises a loop only when it needs no scalar remainder (its
// "very-cheap" cost model), which leaves an elementwise loop over n entries
// scalar. Code between these marks gets -O3's cost model instead (same
// values: no reassociation). Other compilers: no-ops.
#if defined(__GNUC__) && !defined(__clang__)
#define FLOWTAPE_VECTORIZE_BEGIN \
  _Pragma("GCC push_options")    \
      _Pragma("GCC optimize(\"vect-cost-model=dynamic\")")
#define FLOWTAPE_VECTORIZE_END _Pragma("GCC pop_options")
#else
#define FLOWTAPE_VECTORIZE_BEGIN
#define FLOWTAPE_VECTORIZE_END
#endif

FLOWTAPE_VECTORIZE_BEGIN
namespace flowtape::internal {

// sum_i p[i], vectorised (Eigen's blocked reduction: several accumulators,
// also more accurate than one running sum).
template <typename T>
T SumOf(const T* p, int64_t n) {
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p, n).sum();
}

// A tensor seen as [outer, n, inner] around `axis` (reductions, slicing).
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
  AxisView(const Shape& s, int axis) {
    for (int i = 0; i < s.rank(); ++i) {
      if (i < axis) outer *= s[i];
      if (i == axis) n = s[i];
      if (i > axis) inner *= s[i];
    }
  }
};

// Strides (in elements) of `in` broadcast against the rank-4 padded `out`.
inline std::array<int64_t, 4> BroadcastStrides(const Shape& in,
                                               const Shape& out) {
  std::array<int64_t, 4> st{0, 0, 0, 0};
  int64_t s = 1;
  for (int i = in.rank() - 1; i >= 0; --i) {
    int o = 4 - in.rank() + i;
    st[o] = in[i] == 1 ? 0 : s;
    s *= in[i];
  }
  (void)out;
  return st;
}

inline std::array<int64_t, 4> Padded(const Shape& s) {
  std::array<int64_t, 4> d{1, 1, 1, 1};
  for (int i = 0; i < s.rank(); ++i) d[4 - s.rank() + i] = s[i];
  return d;
}

// out[i] = f(a[i], b[i]); out never overlaps a or b (fresh outputs), which
// __restrict tells the vectoriser.
template <typename T, typename F>
void SameShapeBinary(const T* __restrict a, const T* __restrict b,
                     T* __restrict out, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}

// out[i] = f(a[ia], b[ib]) over the broadcast of a and b into `os`.
template <typename T, typename F>
void BroadcastBinary(const T* a, const Shape& as, const T* b, const Shape& bs,
                     T* out, const Shape& os, F f) {
  const int64_t n = os.numel();
  if (as == os && bs == os) {
    SameShapeBinary(a, b, out, n, f);
    return;
  }
  if (as.numel() == 1 && bs == os) {
    const T av = a[0];
    for (int64_t i = 0; i < n; ++i) out[i] = f(av, b[i]);
    return;
  }
  if (bs.numel() == 1 && as == os) {
    const T bv = b[0];
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], bv);
    return;
  }
  if (as.numel() == 1 && bs.numel() == 1) {
    std::fill_n(out, n, f(a[0], b[0]));
    return;
  }
  auto d = Padded(os);
  auto sa = BroadcastStrides(as, os), sb = BroadcastStrides(bs, os);
  const int64_t m = d[3];
  for (int64_t i0 = 0; i0 < d[0]; ++i0)
    for (int64_t i1 = 0; i1 < d[1]; ++i1)
      for (int64_t i2 = 0; i2 < d[2]; ++i2) {
        const T* pa = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        const T* pb = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        T* po = out + ((i0 * d[1] + i1) * d[2] + i2) * m;
        // Contiguous inner rows (e.g. a bias row) get vectorisable loops.
        if (sa[3] == 1 && sb[3] == 1) {
          for (int64_t i3 = 0; i3 < m; ++i3) po[i3] = f(pa[i3], pb[i3]);
        } else if (sa[3] == 1 && sb[3] == 0) {
          const T bv = pb[0];
          for (int64_t i3 = 0; i3 < m; ++i3) po[i3] = f(pa[i3], bv);
        } else if (sa[3] == 0 && sb[3] == 1) {
          const T av = pa[0];
          for (int64_t i3 = 0; i3 < m; ++i3) po[i3] = f(av, pb[i3]);
        } else {
          for (int64_t i3 = 0; i3 < m; ++i3)
            po[i3] = f(pa[i3 * sa[3]], pb[i3 * sb[3]]);
        }
      }
}

}  // namespace flowtape::internal
FLOWTAPE_VECTORIZE_END

#endif  // FLOWTAPE_AUTODIFF_KERNELS_H_
