#include "flows/matching/assignment.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows::matching {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status ValidateCost(const Eigen::MatrixXd& cost) {
  const Eigen::Index n = cost.rows(), m = cost.cols();
  if (n == 0 || m == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment: empty cost matrix (", n, " x ", m, ")"));
  }
  if (n > m) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment: more rows than columns (", n, " x ", m,
                     "); every row needs its own column, pass the transpose"));
  }
  if (m > std::numeric_limits<int>::max() / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment: too many columns (", m, ")"));
  }
  const double limit = DBL_MAX / (4.0 * (static_cast<double>(n) + 1.0));
  for (Eigen::Index j = 0; j < m; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) {
      const double c = cost(i, j);
      if (!std::isfinite(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "assignment: non-finite cost C(", i, ", ", j, ") = ", c));
      }
      if (std::abs(c) > limit) {
        return absl::InvalidArgumentError(absl::StrCat(
            "assignment: cost C(", i, ", ", j, ") = ", c,
            " is too large in magnitude (limit DBL_MAX / (4 (n + 1)) = ", limit,
            ")"));
      }
    }
  }
  return absl::OkStatus();
}

// Eight doubles (GCC/Clang vector extension: one AVX-512 register with
// -march=native on such hosts, two AVX or four SSE2 registers otherwise);
// unaligned, may alias the double arrays it is loaded from.
typedef double Vec8 __attribute__((vector_size(64), aligned(8), may_alias));
constexpr int kLanes = 8;
// (Vec8{} + x: x in every lane. No function returns a Vec8: without
// AVX-512 its return convention differs between targets, -Wpsabi.)

// Runs block(j, track) over the whole 8-wide blocks of [0, m), alternating
// two tracks (two independent dependency chains); returns the first column
// left for the scalar tail.
template <typename Block, typename Track>
int ScanBlocks(int m, Block& block, Track& even, Track& odd) {
  int j = 0;
  for (; j + 2 * kLanes <= m; j += 2 * kLanes) {
    block(j, even);
    block(j + kLanes, odd);
  }
  if (j + kLanes <= m) {
    block(j, even);
    j += kLanes;
  }
  return j;
}

// One Dijkstra relaxation through a row with costs ci and offset base:
//   r_j = base + ci[j] - v_eff[j];  if r_j < dist[j]: dist[j] = r_j,
//   path[j] = row,
// in the same pass as the next column to scan: the first j with the least
// dist[j] that is free (busy[j] = 0: the search then ends), else the first
// with the least dist[j]; returned with its distance in *lowest (-1 and
// +inf if every column is scanned). Distances tie often (the potentials
// make whole shortest-path trees tight), so the free preference matters.
// Branch-free: whether a distance improves is data-dependent and would
// mispredict. Scanned columns carry v_eff = -inf and dist = +inf, so they
// neither improve nor win.
int Relax(const double* ci, double base, double row, const double* v_eff,
          const double* busy, double* dist, double* path, int m,
          double* lowest) {
  const Vec8 vbase = Vec8{} + base;
  const Vec8 vrow = Vec8{} + row;
  // Per lane, the least (dist, busy) seen and its first index; two sets
  // (even and odd blocks of 8) halve the dependency chain through them.
  struct Track {
    Vec8 low = Vec8{} + kInf;
    Vec8 busy = Vec8{} + 1;
    Vec8 idx = Vec8{} + -1;
  } even, odd;
  Vec8 vj = {0, 1, 2, 3, 4, 5, 6, 7};
  auto block = [&](int j, Track& t) {
    const Vec8 r = vbase + *reinterpret_cast<const Vec8*>(ci + j) -
                   *reinterpret_cast<const Vec8*>(v_eff + j);
    Vec8& d = *reinterpret_cast<Vec8*>(dist + j);
    Vec8& p = *reinterpret_cast<Vec8*>(path + j);
    const Vec8 b = *reinterpret_cast<const Vec8*>(busy + j);
    const auto better = r < d;
    const Vec8 dn = better ? r : d;
    d = dn;
    p = better ? vrow : p;
    const auto wins = (dn < t.low) | ((dn == t.low) & (b < t.busy));
    t.low = wins ? dn : t.low;
    t.busy = wins ? b : t.busy;
    t.idx = wins ? vj : t.idx;
    vj += kLanes;
  };
  int j = ScanBlocks(m, block, even, odd);
  double best = kInf, best_busy = 1;
  int index = -1;
  auto consider = [&](double dj, double bj, int k) {
    if (!(dj < kInf)) return;
    if (index < 0 || dj < best ||
        (dj == best && (bj < best_busy || (bj == best_busy && k < index)))) {
      best = dj;
      best_busy = bj;
      index = k;
    }
  };
  for (const Track& t : {even, odd})
    for (int k = 0; k < kLanes; ++k)
      consider(t.low[k], t.busy[k], static_cast<int>(t.idx[k]));
  for (; j < m; ++j) {
    const double r = base + ci[j] - v_eff[j];
    if (r < dist[j]) {
      dist[j] = r;
      path[j] = row;
    }
    consider(dist[j], busy[j], j);
  }
  *lowest = best;
  return index;
}

// Buffers reused by every call on a thread (no allocation once warm).
struct Workspace {
  std::vector<double> u, v, shortest, dist, v_eff, path, busy, row_major;
  std::vector<int> col4row, row4col, free_rows, scanned_rows, scanned_cols;
};

Workspace& ThreadWorkspace() {
  thread_local Workspace w;
  return w;
}

// The two least reduced costs r_j = ci[j] - v[j] of a row: *w1 (at a
// column *j1, fixed by the order of the scan) and *w2 (= *w1 on a tie).
void TwoLeast(const double* ci, const double* v, int m, int* j1, double* w1,
              double* w2) {
  // Per lane of two blocks of 8: least a (at index ia) and second least b.
  struct Track {
    Vec8 a = Vec8{} + kInf;
    Vec8 b = Vec8{} + kInf;
    Vec8 ia = Vec8{} + -1;
  } even, odd;
  Vec8 vj = {0, 1, 2, 3, 4, 5, 6, 7};
  auto block = [&](int j, Track& t) {
    const Vec8 r = *reinterpret_cast<const Vec8*>(ci + j) -
                   *reinterpret_cast<const Vec8*>(v + j);
    const auto lower = r < t.a;
    t.b = lower ? t.a : (r < t.b ? r : t.b);
    t.ia = lower ? vj : t.ia;
    t.a = lower ? r : t.a;
    vj += kLanes;
  };
  int j = ScanBlocks(m, block, even, odd);
  // Lane-wise merge of the two sets, then across the 8 lanes.
  const auto odd_lower = odd.a < even.a;
  const Vec8 hi = odd_lower ? even.a : odd.a;
  const Vec8 lo_b = even.b < odd.b ? even.b : odd.b;
  const Vec8 la = odd_lower ? odd.a : even.a;
  const Vec8 lb = hi < lo_b ? hi : lo_b;
  const Vec8 li = odd_lower ? odd.ia : even.ia;
  int k_best = 0;
  for (int k = 1; k < kLanes; ++k)
    if (la[k] < la[k_best]) k_best = k;
  double a = la[k_best], b = kInf;
  int ia = static_cast<int>(li[k_best]);
  for (int k = 0; k < kLanes; ++k) {
    b = std::min(b, lb[k]);
    if (k != k_best) b = std::min(b, la[k]);
  }
  auto take = [&](double r, int k) {
    if (r < a) {
      b = a;
      a = r;
      ia = k;
    } else {
      b = std::min(b, r);
    }
  };
  for (; j < m; ++j) take(ci[j] - v[j], j);
  *j1 = ia;
  *w1 = a;
  *w2 = b;
}

// Forward auction (Bertsekas 1988) with epsilon scaling, c row-major
// n x n: a free row i bids for its least reduced cost column j1, lowering
// v_j1 by (second least - least) + eps, and evicts j1's owner. Each phase
// ends with an eps-optimal matching; only the potentials v are kept, as
// the starting point of the exact augmenting paths (any v is a valid start
// with nothing matched). On structured costs (squared distances between
// point clouds) this cuts the rows those paths scan by an order of
// magnitude. A phase stops after 64 n bids (the prices are then only a
// worse start).
void AuctionPrices(const double* c, int n, Workspace& w) {
  std::vector<double>& v = w.v;
  std::fill(v.begin(), v.end(), 0.0);
  if (n < 2) return;
  const Eigen::Map<const Eigen::ArrayXd> all(c,
                                             static_cast<Eigen::Index>(n) * n);
  const double range = all.maxCoeff() - all.minCoeff();
  // Each phase lowers a v_j by at most 64 n (range + eps) in all, over at
  // most ~log10(80 n) + 1 phases; keep that far below the overflow limit
  // of ValidateCost (beyond it: zero potentials, still exact).
  if (!(range > 0) ||
      range > DBL_MAX / (4096.0 * n * (static_cast<double>(n) + 1.0)))
    return;
  // Bertsekas' schedule: eps from range / 8 down by 10x per phase to
  // range / (10 n), where prices are close enough that the augmenting
  // paths which follow are short (measured: //benchmarks:ot_bench).
  double eps = range / 8;
  const double eps_final = range / (10.0 * n);
  std::vector<int>& owner = w.row4col;
  std::vector<int>& queue = w.free_rows;
  while (true) {
    std::fill(owner.begin(), owner.end(), -1);
    queue.resize(n);
    for (int i = 0; i < n; ++i) queue[i] = n - 1 - i;
    int64_t bids = 0;
    while (!queue.empty() && bids < 64 * static_cast<int64_t>(n)) {
      const int i = queue.back();
      queue.pop_back();
      ++bids;
      int j1;
      double w1, w2;
      TwoLeast(c + static_cast<size_t>(i) * n, v.data(), n, &j1, &w1, &w2);
      v[j1] -= (w2 - w1) + eps;
      if (owner[j1] >= 0) queue.push_back(owner[j1]);
      owner[j1] = i;
    }
    if (eps <= eps_final) break;
    eps = std::max(eps / 10, eps_final);
  }
  std::fill(owner.begin(), owner.end(), -1);
}

// The first two steps of LAPJV's initialisation (Jonker & Volgenant 1987)
// of a square problem, c row-major n x n: column reduction and reduction
// transfer. Leaves v and a partial matching in which every assigned row i
// is at its least reduced cost, c_i,x_i - v_x_i = min_j (c_ij - v_j), and
// the unassigned rows in w.free_rows; returns false (without the transfer)
// when more than half the rows are left free. (LAPJV's third step, augmenting
// row reduction, is an auction without eps and made squared-distance costs 4x
// slower here.)
bool InitializeSquare(const double* c, int n, Workspace& w) {
  std::vector<double>& v = w.v;
  std::vector<int>&x = w.col4row, &y = w.row4col;
  // Column reduction: v_j = min_i c_ij; each column's first minimal row
  // takes it unless that row already holds a column (scanned from the last).
  std::fill(v.begin(), v.end(), kInf);
  for (int i = 0; i < n; ++i) {
    const double* ci = c + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      if (ci[j] < v[j]) {
        v[j] = ci[j];
        y[j] = i;
      }
    }
  }
  for (int j = n - 1; j >= 0; --j) {
    const int i = y[j];
    if (x[i] < 0) {
      x[i] = j;
    } else {
      y[j] = -1;
    }
  }
  w.free_rows.clear();
  for (int i = 0; i < n; ++i)
    if (x[i] < 0) w.free_rows.push_back(i);
  if (2 * static_cast<int64_t>(w.free_rows.size()) > n) return false;
  // Reduction transfer: an assigned row's own column gets the row's second
  // least reduced cost, v_j -= min_{k != j} (c_ik - v_k) (>= 0).
  for (int i = 0; i < n; ++i) {
    const int j = x[i];
    if (j < 0) continue;
    const double* ci = c + static_cast<size_t>(i) * n;
    double second = kInf;
    for (int k = 0; k < n; ++k) {
      if (k != j) second = std::min(second, ci[k] - v[k]);
    }
    if (second < kInf) v[j] -= second;
  }
  return true;
}

// Shortest augmenting paths from every row in w.free_rows (scipy's form of
// Jonker-Volgenant), c row-major n x m. On entry rows not free hold a
// column with c_ij - u_i - v_j >= 0 for all j, equality at their column.
absl::Status AugmentFreeRows(const double* c, int m, Workspace& w) {
  std::vector<double>& u = w.u;
  std::vector<double>& v = w.v;
  std::vector<double>& shortest = w.shortest;  // final distance, scanned
  std::vector<double>& dist = w.dist;          // tentative; +inf if scanned
  std::vector<double>& v_eff = w.v_eff;        // v; -inf if scanned
  // Predecessor row of each column and whether the column is assigned, as
  // doubles so the relaxation handles them in the distances' vector lanes.
  std::vector<double>& path = w.path;
  std::vector<double>& busy = w.busy;
  std::vector<int>& col4row = w.col4row;
  std::vector<int>& row4col = w.row4col;
  std::vector<int>& scanned_rows = w.scanned_rows;
  std::vector<int>& scanned_cols = w.scanned_cols;
  for (int j = 0; j < m; ++j) busy[j] = row4col[j] == -1 ? 0.0 : 1.0;
  for (const int cur_row : w.free_rows) {
    std::fill(dist.begin(), dist.end(), kInf);
    std::copy(v.begin(), v.end(), v_eff.begin());
    scanned_rows.clear();
    scanned_cols.clear();
    double min_val = 0.0;
    int i = cur_row;
    int sink = -1;
    while (sink == -1) {
      scanned_rows.push_back(i);
      const double* const ci = c + static_cast<size_t>(i) * m;
      double lowest;
      const int index =
          Relax(ci, min_val - u[i], static_cast<double>(i), v_eff.data(),
                busy.data(), dist.data(), path.data(), m, &lowest);
      min_val = lowest;
      if (index < 0 || !std::isfinite(min_val)) {
        return absl::InternalError(
            absl::StrCat("assignment: no finite augmenting path from row ",
                         cur_row, " (numerical overflow)"));
      }
      const int j = index;
      shortest[j] = lowest;
      dist[j] = kInf;
      v_eff[j] = -kInf;
      scanned_cols.push_back(j);
      if (row4col[j] == -1) {
        sink = j;
      } else {
        i = row4col[j];
      }
    }

    // Potentials: keep reduced costs >= 0 and make the path tight.
    u[cur_row] += min_val;
    for (int r : scanned_rows) {
      if (r != cur_row) u[r] += min_val - shortest[col4row[r]];
    }
    for (int j : scanned_cols) v[j] -= min_val - shortest[j];
    // Flip the matching along the path back to cur_row.
    int j = sink;
    while (true) {
      const int r = static_cast<int>(path[j]);
      row4col[j] = r;
      busy[j] = 1.0;
      std::swap(col4row[r], j);
      if (r == cur_row) break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Assignment> SolveAssignmentWithDuals(
    const Eigen::MatrixXd& cost) {
  FT_RETURN_IF_ERROR(ValidateCost(cost));
  const int n = static_cast<int>(cost.rows());
  const int m = static_cast<int>(cost.cols());
  Workspace& w = ThreadWorkspace();
  for (std::vector<double>* a :
       {&w.u, &w.v, &w.shortest, &w.dist, &w.v_eff, &w.path, &w.busy}) {
    a->assign(m, 0.0);
  }
  w.col4row.assign(m, -1);
  w.row4col.assign(m, -1);
  Assignment out;
  if (n == m) {
    // Square: solve the transpose, whose rows are the columns of the
    // column-major `cost` (contiguous: no copy). Its row potentials are
    // our v, its column potentials our u.
    const double* ct = cost.data();
    if (!InitializeSquare(ct, n, w)) {
      // The column minima mostly collide (typical of point clouds): start
      // from auction prices with nothing matched instead.
      AuctionPrices(ct, n, w);
      std::fill(w.col4row.begin(), w.col4row.end(), -1);
      std::fill(w.row4col.begin(), w.row4col.end(), -1);
      w.free_rows.resize(n);
      for (int i = 0; i < n; ++i) w.free_rows[i] = i;
    }
    for (int r = 0; r < n; ++r) {
      const int j = w.col4row[r];
      w.u[r] = j >= 0 ? ct[static_cast<size_t>(r) * n + j] - w.v[j] : 0.0;
    }
    FT_RETURN_IF_ERROR(AugmentFreeRows(ct, n, w));
    // Shift so that max_j v_j = 0 (the equality dual has no sign
    // constraint; u_i + v_j is unchanged).
    double top = -kInf;
    for (int r = 0; r < n; ++r) top = std::max(top, w.u[r]);
    out.col_for_row.assign(w.row4col.begin(), w.row4col.end());
    out.row_potential.resize(n);
    out.col_potential.resize(n);
    for (int k = 0; k < n; ++k) {
      out.row_potential(k) = w.v[k] + top;
      out.col_potential(k) = w.u[k] - top;
    }
  } else {
    // Rectangular: row-major copy (each relaxation walks one row), every
    // row free, zero potentials (which keeps v <= 0 and v = 0 on columns
    // never reached).
    w.row_major.resize(static_cast<size_t>(n) * m);
    Eigen::Map<
        Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        w.row_major.data(), n, m) = cost;
    w.free_rows.resize(n);
    for (int i = 0; i < n; ++i) w.free_rows[i] = i;
    FT_RETURN_IF_ERROR(AugmentFreeRows(w.row_major.data(), m, w));
    out.col_for_row.assign(w.col4row.begin(), w.col4row.begin() + n);
    out.row_potential = Eigen::Map<const Eigen::VectorXd>(w.u.data(), n);
    out.col_potential = Eigen::Map<const Eigen::VectorXd>(w.v.data(), m);
  }
  double total = 0.0;
  for (int r = 0; r < n; ++r) total += cost(r, out.col_for_row[r]);
  out.cost = total;
  return out;
}

absl::StatusOr<std::vector<int>> SolveAssignment(const Eigen::MatrixXd& cost) {
  FT_ASSIGN_OR_RETURN(Assignment a, SolveAssignmentWithDuals(cost));
  return std::move(a.col_for_row);
}

absl::Status VerifyAssignment(const Eigen::MatrixXd& cost, const Assignment& a,
                              double rel_tol) {
  const Eigen::Index n = cost.rows(), m = cost.cols();
  auto fail = [](auto&&... parts) {
    return absl::FailedPreconditionError(
        absl::StrCat("assignment certificate: ", parts...));
  };
  if (static_cast<Eigen::Index>(a.col_for_row.size()) != n ||
      a.row_potential.size() != n || a.col_potential.size() != m) {
    return fail("sizes (", a.col_for_row.size(), ", ", a.row_potential.size(),
                ", ", a.col_potential.size(), ") do not match the ", n, " x ",
                m, " cost");
  }
  const double scale = std::max(1.0, cost.cwiseAbs().maxCoeff());
  const double tol = rel_tol * scale;
  std::vector<char> used(m, 0);
  double total = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const int j = a.col_for_row[i];
    if (j < 0 || j >= m) return fail("row ", i, " assigned to column ", j);
    if (used[j]) return fail("column ", j, " assigned twice");
    used[j] = 1;
    const double gap = cost(i, j) - a.row_potential(i) - a.col_potential(j);
    if (std::abs(gap) > tol) {
      return fail("assigned pair (", i, ", ", j,
                  ") not tight: C - u - v = ", gap);
    }
    total += cost(i, j);
  }
  for (Eigen::Index j = 0; j < m; ++j) {
    if (a.col_potential(j) > tol) {
      return fail("column potential v_", j, " = ", a.col_potential(j), " > 0");
    }
    if (!used[j] && std::abs(a.col_potential(j)) > tol) {
      return fail("unassigned column ", j, " has v = ", a.col_potential(j));
    }
    for (Eigen::Index i = 0; i < n; ++i) {
      const double gap = cost(i, j) - a.row_potential(i) - a.col_potential(j);
      if (gap < -tol) {
        return fail("dual infeasible at (", i, ", ", j, "): C - u - v = ", gap);
      }
    }
  }
  if (std::abs(total - a.cost) > static_cast<double>(n) * tol) {
    return fail("recorded cost ", a.cost, " != sum of assigned costs ", total);
  }
  return absl::OkStatus();
}

}  // namespace flowtape::flows::matching
