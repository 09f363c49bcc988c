// Ground costs between two minibatches for optimal-transport couplings.
//
// SquaredEuclideanCost(x0 [n, d], x1 [m, d]) -> C [n, m] with
//   C_ij = ||x0_i - x1_j||^2 = ||x0_i||^2 + ||x1_j||^2 - 2 <x0_i, x1_j>,
// evaluated in the expanded form (one matrix product, O(n m d)) and clamped
// at 0. Rounding: |C_ij - exact| <= about 4 d eps_mach (||x0_i||^2 +
// ||x1_j||^2), so C_ii of identical points is ~1e-16 relative, not exactly 0.
// Rows are points. Errors (InvalidArgument): different widths d, empty
// batches (n = 0, m = 0 or d = 0), non-finite entries.
#ifndef FLOWTAPE_FLOWS_MATCHING_COST_H_
#define FLOWTAPE_FLOWS_MATCHING_COST_H_

#include <Eigen/Dense>

#include "absl/status/statusor.h"

namespace flowtape::flows::matching {

absl::StatusOr<Eigen::MatrixXd> SquaredEuclideanCost(const Eigen::MatrixXd& x0,
                                                     const Eigen::MatrixXd& x1);

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_COST_H_
