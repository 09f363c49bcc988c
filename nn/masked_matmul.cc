#include "nn/masked_matmul.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/gemm.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape::nn {
namespace {

template <typename T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <typename T>
constexpr int64_t kLanes = Eigen::internal::unpacket_traits<Packet<T>>::size;
// kLanes packets: a kLanes x kLanes square (the packet type's alignment
// attribute does not matter to the template).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
template <typename T>
using PacketSquare =
    Eigen::internal::PacketBlock<Packet<T>, static_cast<int>(kLanes<T>)>;
#pragma GCC diagnostic pop
// Columns of a full tile: two packets.
template <typename T>
constexpr int64_t kTileCols = 2 * kLanes<T>;

// The plans of a mask for both products: `cols` tiles m's columns (x W and
// m .* (x' g)), `rows` tiles its rows, the columns of W' (g W'). A tile is
// kTileCols<T> columns (then one of kLanes<T>, then single columns) with the
// rows its columns' nonzeros span. One pass finds each row's first and last
// nonzero, [lo_i, hi_i); a column tile's rows are those whose [lo_i, hi_i)
// meets it, which covers every nonzero of any mask and is exact for masks
// whose rows are runs (MADE's staircases).
struct MaskPlans {
  std::vector<MaskBlock> cols, rows;
};

// f(c0, c1) for the tiles of [0, n).
template <typename T, typename F>
void ForTiles(int64_t n, const F& f) {
  int64_t c0 = 0;
  while (c0 < n) {
    const int64_t left = n - c0;
    const int64_t w = left >= kTileCols<T> ? kTileCols<T>
                      : left >= kLanes<T>  ? kLanes<T>
                                           : 1;
    f(c0, c0 + w);
    c0 += w;
  }
}

template <typename T>
MaskPlans PlanMask(const Tensor& mask) {
  const int64_t in = mask.dim(0), out = mask.dim(1);
  const T* m = mask.data<T>();
  // Whether m[k, k + L) are all zero (+0 or -0), by their bits.
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr int64_t L = kLanes<T>;
  auto zeros = [](const T* p) {
    U bits[kLanes<T>], any = 0;
    std::memcpy(bits, p, sizeof(bits));
    for (int64_t k = 0; k < kLanes<T>; ++k) any |= bits[k] << 1;
    return any == 0;
  };
  std::vector<int64_t> lo(in), hi(in);
  for (int64_t i = 0; i < in; ++i) {
    const T* r = m + i * out;
    int64_t a = 0, b = out;
    while (a + L <= b && zeros(r + a)) a += L;
    while (a < b && r[a] == T(0)) ++a;
    while (b - L >= a && zeros(r + b - L)) b -= L;
    while (b > a && r[b - 1] == T(0)) --b;
    lo[i] = a;
    hi[i] = b;
  }
  auto close = [](MaskBlock b) {
    if (b.hi <= b.lo) b.lo = b.hi = 0;
    return b;
  };
  MaskPlans p;
  ForTiles<T>(in, [&](int64_t c0, int64_t c1) {
    MaskBlock b{c0, c1, out, 0};
    for (int64_t i = c0; i < c1; ++i)
      if (lo[i] < hi[i]) {
        b.lo = std::min(b.lo, lo[i]);
        b.hi = std::max(b.hi, hi[i]);
      }
    p.rows.push_back(close(b));
  });
  ForTiles<T>(out, [&](int64_t c0, int64_t c1) {
    MaskBlock b{c0, c1, in, 0};
    for (int64_t i = 0; i < in; ++i)
      if (lo[i] < c1 && hi[i] > c0) {
        b.lo = std::min(b.lo, i);
        b.hi = i + 1;
      }
    p.cols.push_back(close(b));
  });
  return p;
}

}  // namespace

std::vector<MaskBlock> PlanMaskBlocks(const Tensor& mask) {
  FT_CHECK(mask.rank() == 2, "plan_mask_blocks: mask ",
           mask.shape().ToString());
  std::vector<MaskBlock> plan;
  VisitDType(mask.dtype(),
             [&](auto zero) { plan = PlanMask<decltype(zero)>(mask).cols; });
  return plan;
}

namespace {

// One tile of C: R rows and V packets of columns,
//   C[r, :] = (init + sum_{k0 <= k < k1} a(r, k) B[k, :]) .* scale[r, :]
// with a(r, k) = a[r * lda + k] (kRowsOfA) or a[k * lda + r], init a row
// (null: zero) and scale rows of stride lds (null: none). B and C have row
// strides ldb and ldc. Each entry sums over k in increasing order.
template <typename T, int R, int V, bool kRowsOfA>
void Tile(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t k0,
          int64_t k1, const T* init, const T* scale, int64_t lds, T* c,
          int64_t ldc) {
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  using P = Packet<T>;
  constexpr int64_t L = kLanes<T>;
  P acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[r][v] = init ? Eigen::internal::ploadu<P>(init + v * L) : pset1<P>(0);
  for (int64_t k = k0; k < k1; ++k) {
    P bk[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      bk[v] = Eigen::internal::ploadu<P>(b + k * ldb + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const P ar = pset1<P>(kRowsOfA ? a[r * lda + k] : a[k * lda + r]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = pmadd(ar, bk[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      P o = acc[r][v];
      if (scale)
        o = Eigen::internal::pmul(
            o, Eigen::internal::ploadu<P>(scale + r * lds + v * L));
      Eigen::internal::pstoreu(c + r * ldc + v * L, o);
    }
}

// Rows [0, n) of one block of columns (width kTileCols, kLanes or 1):
// arguments as for Tile, pointers at row 0 and the block's first column.
template <typename T, bool kRowsOfA>
void BlockRows(int64_t n, int64_t width, const T* a, int64_t lda, const T* b,
               int64_t ldb, int64_t k0, int64_t k1, const T* init,
               const T* scale, int64_t lds, T* c, int64_t ldc) {
  auto step = [&](auto rows, int64_t r) {
    constexpr int R = decltype(rows)::value;
    const T* ar = kRowsOfA ? a + r * lda : a + r;
    const T* sr = scale ? scale + r * lds : nullptr;
    if (width == kTileCols<T>)
      Tile<T, R, 2, kRowsOfA>(ar, lda, b, ldb, k0, k1, init, sr, lds,
                              c + r * ldc, ldc);
    else
      Tile<T, R, 1, kRowsOfA>(ar, lda, b, ldb, k0, k1, init, sr, lds,
                              c + r * ldc, ldc);
  };
  if (width == 1) {  // one column, scalar
    for (int64_t r = 0; r < n; ++r) {
      T s = init ? init[0] : T(0);
      for (int64_t k = k0; k < k1; ++k)
        s += (kRowsOfA ? a[r * lda + k] : a[k * lda + r]) * b[k * ldb];
      c[r * ldc] = scale ? s * scale[r * lds] : s;
    }
    return;
  }
  int64_t r = 0;
  for (; r + 8 <= n; r += 8) step(std::integral_constant<int, 8>(), r);
  if (n - r >= 4) step(std::integral_constant<int, 4>(), r), r += 4;
  if (n - r >= 2) step(std::integral_constant<int, 2>(), r), r += 2;
  if (n - r >= 1) step(std::integral_constant<int, 1>(), r);
}

Tensor MaskedMatMulT(const Tensor& g, const Tensor& w, const Tensor& mask,
                     const MaskPlans& plans);
Tensor MaskedOuter(const Tensor& x, const Tensor& g, const Tensor& mask,
                   const MaskPlans& plans);

// A per-thread workspace of at least n values (the masked weight of the op
// running on this thread; intra-op workers only read it).
template <typename T>
T* Workspace(int64_t n) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// W = w .* m row-major [in, out], or its transpose W' [out, in], in the
// workspace.
template <typename T>
const T* MaskedWeight(const Tensor& w, const Tensor& mask, bool transposed) {
  const int64_t in = w.dim(0), out = w.dim(1);
  T* wm = Workspace<T>(in * out);
  const T *pw = w.data<T>(), *pm = mask.data<T>();
  if (!transposed) {
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<Array>(wm, in * out) = Eigen::Map<const Array>(pw, in * out) *
                                      Eigen::Map<const Array>(pm, in * out);
    return wm;
  }
  // Squares of kLanes x kLanes transposed in registers, scalar edges.
  using Eigen::internal::ploadu;
  using P = Packet<T>;
  constexpr int L = static_cast<int>(kLanes<T>);
  int64_t i0 = 0;
  for (; i0 + L <= in; i0 += L) {
    int64_t j0 = 0;
    for (; j0 + L <= out; j0 += L) {
      PacketSquare<T> square;
      for (int r = 0; r < L; ++r) {
        const int64_t at = (i0 + r) * out + j0;
        square.packet[r] =
            Eigen::internal::pmul(ploadu<P>(pw + at), ploadu<P>(pm + at));
      }
      Eigen::internal::ptranspose(square);
      for (int r = 0; r < L; ++r)
        Eigen::internal::pstoreu(wm + (j0 + r) * in + i0, square.packet[r]);
    }
    for (; j0 < out; ++j0)
      for (int64_t i = i0; i < i0 + L; ++i)
        wm[j0 * in + i] = pw[i * out + j0] * pm[i * out + j0];
  }
  for (; i0 < in; ++i0)
    for (int64_t j = 0; j < out; ++j)
      wm[j * in + i0] = pw[i0 * out + j] * pm[i0 * out + j];
  return wm;
}

// Multiply-adds per row of the input that a plan computes.
int64_t PlanWork(const std::vector<MaskBlock>& plan) {
  int64_t work = 0;
  for (const MaskBlock& k : plan) work += (k.c1 - k.c0) * (k.hi - k.lo);
  return work;
}

// f(r0, len) over rows [0, n): one call for a small product, else at most
// 8 fixed chunks of at least 128 rows (a multiple of 8), chosen from the
// sizes alone (as autodiff/gemm.h does) and spread over the intra-op pool,
// so the result is the same for every thread count.
template <typename F>
void ForRowChunks(int64_t n, int64_t work_per_row, const F& f) {
  constexpr int64_t kMinRows = 128;
  if (n * work_per_row < internal::kParallelFlops || n < 2 * kMinRows) {
    f(0, n);
    return;
  }
  int64_t block = std::max(kMinRows, (n + 7) / 8);
  block = (block + 7) / 8 * 8;
  internal::ParallelChunks((n + block - 1) / block, [&](int64_t i) {
    f(i * block, std::min(block, n - i * block));
  });
}

void CheckShapes(const char* op, const Tensor& x, int64_t rows, const Tensor& w,
                 const Tensor& mask) {
  FT_CHECK(x.rank() == 2 && w.rank() == 2 && mask.shape() == w.shape() &&
               x.dim(1) == rows,
           op, ": input ", x.shape().ToString(), ", weight ",
           w.shape().ToString(), ", mask ", mask.shape().ToString());
  FT_CHECK(!mask.requires_grad(), op, ": the mask must be a constant");
}

// C[n, cols] = init + A B over a plan of B's columns: A [n, k] row-major,
// B [k, cols] row-major (zero outside each block's rows), init [cols] or
// null.
template <typename T>
void PlannedProduct(const std::vector<MaskBlock>& plan, int64_t n, const T* a,
                    int64_t k, const T* b, int64_t cols, const T* init, T* c) {
  ForRowChunks(n, PlanWork(plan), [&](int64_t r0, int64_t len) {
    for (const MaskBlock& t : plan)
      BlockRows<T, true>(len, t.c1 - t.c0, a + r0 * k, k, b + t.c0, cols, t.lo,
                         t.hi, init ? init + t.c0 : nullptr, nullptr, 0,
                         c + r0 * cols + t.c0, cols);
  });
}

// The plans ride on the tape node, for the backward products.
void SavePlans(Op& op, const MaskPlans& plans) {
  if (op.recording()) op.SaveObject(std::make_shared<const MaskPlans>(plans));
}

// y = x W + b.
Tensor Affine(const Tensor& x, const Tensor& w, const Tensor& mask,
              const Tensor& b, const MaskPlans& plans) {
  const int64_t n = x.dim(0), in = w.dim(0), out = w.dim(1);
  Op op("masked_affine", {x, w, mask, b});
  Tensor y = op.NewOutput(Shape{n, out});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    PlannedProduct<T>(plans.cols, n, x.data<T>(), in,
                      MaskedWeight<T>(w, mask, false), out,
                      b.defined() ? b.data<T>() : nullptr, y.mutable_data<T>());
  });
  SavePlans(op, plans);
  return op.Finish(y, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const Tensor mask = c.input(2);
    const MaskPlans& plans = c.saved_object<MaskPlans>();
    if (c.needs_grad(0)) gin[0] = MaskedMatMulT(g, c.input(1), mask, plans);
    if (c.needs_grad(1)) gin[1] = MaskedOuter(c.input(0), g, mask, plans);
    if (c.num_inputs() == 4 && c.needs_grad(3)) gin[3] = Sum(g, 0);
  });
}

// z = g W' : [N, out] -> [N, in].
Tensor MaskedMatMulT(const Tensor& g, const Tensor& w, const Tensor& mask,
                     const MaskPlans& plans) {
  CheckShapes("masked_matmul_t", g, w.dim(1), w, mask);
  const int64_t n = g.dim(0), in = w.dim(0), out = w.dim(1);
  Op op("masked_matmul_t", {g, w, mask});
  Tensor z = op.NewOutput(Shape{n, in});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    PlannedProduct<T>(plans.rows, n, g.data<T>(), out,
                      MaskedWeight<T>(w, mask, true), in, nullptr,
                      z.mutable_data<T>());
  });
  SavePlans(op, plans);
  return op.Finish(z, [](const OpContext& c, const Tensor& gz, Tensor* gin) {
    const Tensor mask = c.input(2);
    const MaskPlans& plans = c.saved_object<MaskPlans>();
    if (c.needs_grad(0)) gin[0] = Affine(gz, c.input(1), mask, Tensor(), plans);
    if (c.needs_grad(1)) gin[1] = MaskedOuter(gz, c.input(0), mask, plans);
  });
}

// o = m .* (x' g) : [in, out], zero off the plan's blocks.
Tensor MaskedOuter(const Tensor& x, const Tensor& g, const Tensor& mask,
                   const MaskPlans& plans) {
  const int64_t n = x.dim(0), in = mask.dim(0), out = mask.dim(1);
  FT_CHECK(x.rank() == 2 && g.rank() == 2 && x.dim(1) == in &&
               g.dim(1) == out && g.dim(0) == n,
           "masked_outer: x ", x.shape().ToString(), ", g ",
           g.shape().ToString(), ", mask ", mask.shape().ToString());
  Op op("masked_outer", {x, g, mask});
  Tensor o = op.NewOutput(Shape{in, out});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const std::vector<MaskBlock>& plan = plans.cols;
    const T *px = x.data<T>(), *pg = g.data<T>(), *pm = mask.data<T>();
    T* po = o.mutable_data<T>();
    std::fill_n(po, in * out, T(0));
    // Blocks write disjoint columns: one chunk per block when large.
    auto one = [&](int64_t i) {
      const MaskBlock& t = plan[i];
      BlockRows<T, false>(t.hi - t.lo, t.c1 - t.c0, px + t.lo, in, pg + t.c0,
                          out, 0, n, nullptr, pm + t.lo * out + t.c0, out,
                          po + t.lo * out + t.c0, out);
    };
    const int64_t blocks = static_cast<int64_t>(plan.size());
    if (n * PlanWork(plan) < internal::kParallelFlops || blocks == 1)
      for (int64_t i = 0; i < blocks; ++i) one(i);
    else
      internal::ParallelChunks(blocks, one);
  });
  SavePlans(op, plans);
  return op.Finish(o, [](const OpContext& c, const Tensor& go, Tensor* gin) {
    const Tensor mask = c.input(2);
    const MaskPlans& plans = c.saved_object<MaskPlans>();
    if (c.needs_grad(0)) gin[0] = MaskedMatMulT(c.input(1), go, mask, plans);
    if (c.needs_grad(1)) gin[1] = Affine(c.input(0), go, mask, Tensor(), plans);
  });
}

}  // namespace

Tensor MaskedAffine(const Tensor& x, const Tensor& w, const Tensor& mask,
                    const Tensor& b) {
  CheckShapes("masked_affine", x, w.dim(0), w, mask);
  FT_CHECK(!b.defined() || b.shape() == Shape{w.dim(1)}, "masked_affine: bias ",
           b.shape().ToString(), " for weight ", w.shape().ToString());
  MaskPlans plans;
  VisitDType(mask.dtype(),
             [&](auto zero) { plans = PlanMask<decltype(zero)>(mask); });
  return Affine(x, w, mask, b, plans);
}

}  // namespace flowtape::nn
