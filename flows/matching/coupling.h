// Index pairs (i, j) that pair x0[i] with x1[j] in a minibatch, drawn from a
// transport plan or read off an assignment (what OT-CFM feeds its loss).
//
// SampleCoupling(P [n, m], k, rng): k i.i.d. draws with
//   Pr[(i, j)] = P_ij / sum_kl P_kl
// (torchcfm's OTPlanSampler with replace=True). Inverse-CDF sampling over the
// row-major flattened plan: u = rng.Uniform() * total, pick the first (i, j)
// whose running sum exceeds u (binary search, O(n m + k log(n m))). Entries
// with P_ij = 0 are never drawn. One rng.Uniform() per draw, so a seed fixes
// the pairs. Errors (InvalidArgument): empty plan, negative or non-finite
// entries, zero total mass, k < 0.
//
// AssignmentToPairs(sigma): the n pairs (i, sigma(i)) in row order.
#ifndef FLOWTAPE_FLOWS_MATCHING_COUPLING_H_
#define FLOWTAPE_FLOWS_MATCHING_COUPLING_H_

#include <Eigen/Dense>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/rng.h"

namespace flowtape::flows::matching {

struct IndexPair {
  int i;  // row of the plan: index into x0
  int j;  // column of the plan: index into x1
  bool operator==(const IndexPair& o) const { return i == o.i && j == o.j; }
};

absl::StatusOr<std::vector<IndexPair>> SampleCoupling(
    const Eigen::MatrixXd& plan, int k, Rng& rng);

std::vector<IndexPair> AssignmentToPairs(const std::vector<int>& col_for_row);

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_COUPLING_H_
