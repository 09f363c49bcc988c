// Exact linear assignment (discrete optimal transport between two equal-weight
// point sets) by shortest augmenting paths with dual potentials: the O(n^2 m)
// Hungarian method in the Jonker-Volgenant form (as in scipy's
// linear_sum_assignment, Crouse 2016).
//
// Problem: for an n x m cost C with n <= m, find sigma: rows -> columns,
// injective, minimising
//   cost(sigma) = sum_i C(i, sigma(i)).
// Linear-programming dual (rows matched exactly once, columns at most once):
//   maximise sum_i u_i + sum_j v_j  subject to  u_i + v_j <= C_ij,  v_j <= 0.
// The solver returns sigma together with potentials (u, v) certifying it:
//   u_i + v_j <= C_ij               for all i, j        (dual feasibility)
//   u_i + v_sigma(i) = C_i,sigma(i) for all i           (tight on sigma)
//   v_j <= 0, and v_j = 0 on the m - n unassigned columns
// so that sum_i u_i + sum_j v_j = cost(sigma) and no assignment is cheaper.
// In floating point these hold up to rounding: VerifyAssignment checks them
// with a tolerance relative to max |C_ij|.
//
// Algorithm: shortest augmenting paths. From each free row r, Dijkstra over
// the reduced costs C_ij - u_i - v_j (>= 0 on rows already assigned) finds
// the cheapest augmenting path to a free column; potentials are shifted by
// the path distances (which keeps the reduced costs >= 0 and makes the path
// tight) and the matching is flipped along the path. Square problems first
// take LAPJV's column reduction and reduction transfer (Jonker & Volgenant
// 1987), which leave most rows matched on random costs; when they leave
// more than half the rows free (point clouds: the column minima collide),
// the paths start instead from the column potentials of an eps-scaling
// auction (Bertsekas 1988) with nothing matched, which makes them short.
// The starting potentials only change the work, never the optimum: every
// augmentation is exact. Rectangular problems start from zero potentials
// (which keeps v <= 0). O(n^2 m) worst case, far less in practice
// (//benchmarks:ot_bench). Negative costs and ties are fine; among
// equal-cost optima the one returned is deterministic but otherwise
// unspecified. Square problems are solved on the transpose, whose rows are
// the contiguous columns of the column-major input (no copy); scratch
// arrays are kept per thread and reused.
//
// Errors (InvalidArgument): empty cost (n = 0 or m = 0), n > m (transpose
// the problem), any non-finite entry, and max |C_ij| > DBL_MAX / (4 (n + 1))
// (potentials and path lengths are sums of up to 2(n + 1) costs and must not
// overflow).
#ifndef FLOWTAPE_FLOWS_MATCHING_ASSIGNMENT_H_
#define FLOWTAPE_FLOWS_MATCHING_ASSIGNMENT_H_

#include <Eigen/Dense>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flowtape::flows::matching {

struct Assignment {
  std::vector<int> col_for_row;   // sigma: size n, distinct values in [0, m)
  Eigen::VectorXd row_potential;  // u, size n
  Eigen::VectorXd col_potential;  // v, size m (<= 0; 0 on unassigned columns)
  double cost = 0.0;              // sum_i C(i, sigma(i))
};

// The optimal assignment with its dual certificate.
absl::StatusOr<Assignment> SolveAssignmentWithDuals(
    const Eigen::MatrixXd& cost);

// The optimal assignment only: result[i] = column assigned to row i.
absl::StatusOr<std::vector<int>> SolveAssignment(const Eigen::MatrixXd& cost);

// Checks the certificate above: sigma injective and in range, potentials of
// the right sizes, u_i + v_j <= C_ij + tol, |u_i + v_sigma(i) - C_i,sigma(i)|
// <= tol, v_j <= tol, |v_j| <= tol on unassigned columns, and the recorded
// cost equal to sum_i C(i, sigma(i)) within n * tol, where
// tol = rel_tol * max(1, max |C_ij|). Returns FailedPrecondition naming the
// first violated condition (row, column, amount).
absl::Status VerifyAssignment(const Eigen::MatrixXd& cost,
                              const Assignment& assignment,
                              double rel_tol = 1e-9);

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_ASSIGNMENT_H_
