#include "flows/matching/assignment.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

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

// Four doubles in one vector register (GCC/Clang vector extension: SSE2
// pairs on baseline x86-64, one AVX register with -mavx); unaligned, may
// alias the double arrays it is loaded from.
typedef double Vec4 __attribute__((vector_size(32), aligned(8), may_alias));

// One Dijkstra relaxation through a row with costs ci and offset base:
//   r_j = base + ci[j] - v_eff[j];  if r_j < dist[j]: dist[j] = r_j,
//   path[j] = row.
// Returns min_j dist[j] after the update. Branch-free: whether a distance
// improves is data-dependent and would mispredict. Scanned columns carry
// v_eff = -inf and dist = +inf, so they neither improve nor win the minimum.
double Relax(const double* ci, double base, double row, const double* v_eff,
             double* dist, double* path, int m) {
  const Vec4 vbase = {base, base, base, base};
  const Vec4 vrow = {row, row, row, row};
  Vec4 vlow = {kInf, kInf, kInf, kInf};
  int j = 0;
  for (; j + 4 <= m; j += 4) {
    const Vec4 r = vbase + *reinterpret_cast<const Vec4*>(ci + j) -
                   *reinterpret_cast<const Vec4*>(v_eff + j);
    Vec4& d = *reinterpret_cast<Vec4*>(dist + j);
    Vec4& p = *reinterpret_cast<Vec4*>(path + j);
    const auto better = r < d;
    d = better ? r : d;
    p = better ? vrow : p;
    vlow = d < vlow ? d : vlow;
  }
  double lowest =
      std::min(std::min(vlow[0], vlow[1]), std::min(vlow[2], vlow[3]));
  for (; j < m; ++j) {
    const double r = base + ci[j] - v_eff[j];
    if (r < dist[j]) {
      dist[j] = r;
      path[j] = row;
    }
    lowest = std::min(lowest, dist[j]);
  }
  return lowest;
}

// The first column j with dist[j] == lowest and row4col[j] == -1 (free: the
// search then ends), else the first with dist[j] == lowest; -1 if none.
int ArgLowest(const double* dist, const int* row4col, double lowest, int m) {
  const Vec4 vlow = {lowest, lowest, lowest, lowest};
  int first = -1;
  int j = 0;
  for (; j + 4 <= m; j += 4) {
    const auto eq = *reinterpret_cast<const Vec4*>(dist + j) == vlow;
    if ((eq[0] | eq[1] | eq[2] | eq[3]) == 0) continue;
    for (int k = j; k < j + 4; ++k) {
      if (dist[k] != lowest) continue;
      if (row4col[k] == -1) return k;
      if (first < 0) first = k;
    }
  }
  for (; j < m; ++j) {
    if (dist[j] != lowest) continue;
    if (row4col[j] == -1) return j;
    if (first < 0) first = j;
  }
  return first;
}

}  // namespace

absl::StatusOr<Assignment> SolveAssignmentWithDuals(
    const Eigen::MatrixXd& cost) {
  if (absl::Status s = ValidateCost(cost); !s.ok()) return s;
  const int n = static_cast<int>(cost.rows());
  const int m = static_cast<int>(cost.cols());
  // Row-major copy: each relaxation walks one row.
  const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>
      c = cost;

  std::vector<double> u(n, 0.0), v(m, 0.0);
  std::vector<int> col4row(n, -1), row4col(m, -1);
  std::vector<double> shortest(m);  // final path distance of scanned columns
  std::vector<double> dist(m);      // tentative distance; +inf once scanned
  std::vector<double> v_eff(m);     // v, or -inf once scanned (no relaxing)
  // Predecessor row of each column, as a double so the relaxation
  // handles it in the same vector lanes as the distances.
  std::vector<double> path(m);
  std::vector<int> scanned_rows, scanned_cols;
  scanned_rows.reserve(n);
  scanned_cols.reserve(m);

  for (int cur_row = 0; cur_row < n; ++cur_row) {
    std::fill(dist.begin(), dist.end(), kInf);
    std::copy(v.begin(), v.end(), v_eff.begin());
    scanned_rows.clear();
    scanned_cols.clear();
    double min_val = 0.0;
    int i = cur_row;
    int sink = -1;
    while (sink == -1) {
      scanned_rows.push_back(i);
      const double* const ci = c.row(i).data();
      const double lowest = Relax(ci, min_val - u[i], static_cast<double>(i),
                                  v_eff.data(), dist.data(), path.data(), m);
      const int index = ArgLowest(dist.data(), row4col.data(), lowest, m);
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
      std::swap(col4row[r], j);
      if (r == cur_row) break;
    }
  }

  Assignment out;
  out.col_for_row = std::move(col4row);
  out.row_potential = Eigen::Map<const Eigen::VectorXd>(u.data(), n);
  out.col_potential = Eigen::Map<const Eigen::VectorXd>(v.data(), m);
  double total = 0.0;
  for (int r = 0; r < n; ++r) total += cost(r, out.col_for_row[r]);
  out.cost = total;
  return out;
}

absl::StatusOr<std::vector<int>> SolveAssignment(const Eigen::MatrixXd& cost) {
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(cost);
  if (!a.ok()) return a.status();
  return std::move(a->col_for_row);
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
