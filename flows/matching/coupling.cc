#include "flows/matching/coupling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flowtape::flows::matching {

absl::StatusOr<std::vector<IndexPair>> SampleCoupling(
    const Eigen::MatrixXd& plan, int k, Rng& rng) {
  const Eigen::Index n = plan.rows(), m = plan.cols();
  if (n == 0 || m == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleCoupling: empty plan (", n, " x ", m, ")"));
  }
  if (n > std::numeric_limits<int>::max() ||
      m > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError("SampleCoupling: plan too large");
  }
  if (k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleCoupling: negative sample count k = ", k));
  }
  // Running sums over the row-major flattening.
  std::vector<double> cum(static_cast<size_t>(n * m));
  double total = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < m; ++j) {
      const double p = plan(i, j);
      if (!std::isfinite(p) || p < 0.0) {
        return absl::InvalidArgumentError(
            absl::StrCat("SampleCoupling: plan entry P(", i, ", ", j, ") = ", p,
                         " is not a finite non-negative number"));
      }
      total += p;
      cum[static_cast<size_t>(i * m + j)] = total;
    }
  }
  if (!(total > 0.0) || !std::isfinite(total)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleCoupling: plan total mass is ", total));
  }
  // Last entry with positive mass: the target when rounding puts u at total.
  size_t last = cum.size() - 1;
  while (last > 0 && cum[last] == cum[last - 1]) --last;

  std::vector<IndexPair> out;
  out.reserve(static_cast<size_t>(k));
  for (int s = 0; s < k; ++s) {
    const double u = rng.Uniform() * total;
    size_t idx = static_cast<size_t>(
        std::upper_bound(cum.begin(), cum.end(), u) - cum.begin());
    if (idx > last) idx = last;
    out.push_back({static_cast<int>(idx / static_cast<size_t>(m)),
                   static_cast<int>(idx % static_cast<size_t>(m))});
  }
  return out;
}

std::vector<IndexPair> AssignmentToPairs(const std::vector<int>& col_for_row) {
  std::vector<IndexPair> out;
  out.reserve(col_for_row.size());
  for (size_t i = 0; i < col_for_row.size(); ++i) {
    out.push_back({static_cast<int>(i), col_for_row[i]});
  }
  return out;
}

}  // namespace flowtape::flows::matching
