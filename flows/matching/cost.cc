#include "flows/matching/cost.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace flowtape::flows::matching {

absl::StatusOr<Eigen::MatrixXd> SquaredEuclideanCost(
    const Eigen::MatrixXd& x0, const Eigen::MatrixXd& x1) {
  if (x0.rows() == 0 || x1.rows() == 0 || x0.cols() == 0 || x1.cols() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("SquaredEuclideanCost: empty batch (x0 ", x0.rows(), " x ",
                     x0.cols(), ", x1 ", x1.rows(), " x ", x1.cols(), ")"));
  }
  if (x0.cols() != x1.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SquaredEuclideanCost: point dimensions differ (x0 has ",
                     x0.cols(), " columns, x1 has ", x1.cols(), ")"));
  }
  if (!x0.allFinite() || !x1.allFinite()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SquaredEuclideanCost: non-finite entry in ",
                     x0.allFinite() ? "x1" : "x0"));
  }
  const Eigen::VectorXd n0 = x0.rowwise().squaredNorm();
  const Eigen::VectorXd n1 = x1.rowwise().squaredNorm();
  Eigen::MatrixXd c = -2.0 * (x0 * x1.transpose());
  c.colwise() += n0;
  c.rowwise() += n1.transpose();
  c = c.cwiseMax(0.0);
  if (!c.allFinite()) {
    return absl::InvalidArgumentError(
        "SquaredEuclideanCost: squared distances overflow a double");
  }
  return c;
}

}  // namespace flowtape::flows::matching
