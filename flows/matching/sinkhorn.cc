#include "flows/matching/sinkhorn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows::matching {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

using RowMajor =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

absl::Status ValidateMarginal(const Eigen::VectorXd& w, Eigen::Index size,
                              const char* name, double* sum) {
  if (w.size() != size) {
    return absl::InvalidArgumentError(absl::StrCat("Sinkhorn: marginal ", name,
                                                   " has size ", w.size(),
                                                   ", expected ", size));
  }
  double s = 0.0;
  for (Eigen::Index i = 0; i < size; ++i) {
    if (!std::isfinite(w(i)) || w(i) < 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Sinkhorn: marginal ", name, "[", i, "] = ", w(i),
                       " is not a finite non-negative number"));
    }
    s += w(i);
  }
  if (!(s > 0.0) || !std::isfinite(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sinkhorn: marginal ", name, " has total mass ", s));
  }
  *sum = s;
  return absl::OkStatus();
}

}  // namespace

absl::Status SinkhornOptions::Validate() const {
  const SinkhornOptions& o = *this;
  if (!std::isfinite(o.epsilon) || !(o.epsilon > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sinkhorn: epsilon must be finite and > 0, got ", o.epsilon));
  }
  if (o.max_iters < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sinkhorn: max_iters must be >= 1, got ", o.max_iters));
  }
  if (!std::isfinite(o.tol) || !(o.tol > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sinkhorn: tol must be finite and > 0, got ", o.tol));
  }
  if (o.initial_epsilon != 0.0 &&
      (!std::isfinite(o.initial_epsilon) || o.initial_epsilon < o.epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sinkhorn: initial_epsilon must be 0 (off) or finite and >= epsilon ",
        o.epsilon, ", got ", o.initial_epsilon));
  }
  if (!(o.scaling_factor > 0.0 && o.scaling_factor < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sinkhorn: scaling_factor must be in (0, 1), got ", o.scaling_factor));
  }
  return absl::OkStatus();
}

namespace {

absl::Status Validate(const Eigen::MatrixXd& cost, const Eigen::VectorXd& a,
                      const Eigen::VectorXd& b, const SinkhornOptions& o) {
  if (cost.rows() == 0 || cost.cols() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sinkhorn: empty cost matrix (", cost.rows(), " x ", cost.cols(), ")"));
  }
  for (Eigen::Index j = 0; j < cost.cols(); ++j) {
    for (Eigen::Index i = 0; i < cost.rows(); ++i) {
      if (!std::isfinite(cost(i, j))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Sinkhorn: non-finite cost C(", i, ", ", j, ") = ", cost(i, j)));
      }
    }
  }
  double sa = 0.0, sb = 0.0;
  FT_RETURN_IF_ERROR(ValidateMarginal(a, cost.rows(), "a", &sa));
  FT_RETURN_IF_ERROR(ValidateMarginal(b, cost.cols(), "b", &sb));
  if (std::abs(sa - sb) > 1e-9 * std::max(sa, sb)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Sinkhorn: marginals have different mass (sum a = ", sa,
                     ", sum b = ", sb, ")"));
  }
  FT_RETURN_IF_ERROR(o.Validate());
  const double cmax = cost.cwiseAbs().maxCoeff();
  if (cmax / o.epsilon > 1e290) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Sinkhorn: epsilon ", o.epsilon, " is too small for costs of size ",
        cmax, " (max |C| / eps must stay below 1e290)"));
  }
  return absl::OkStatus();
}

// lse = LSE_k((pot_k - c_k) / eps) over a contiguous slice c of length len.
double LogSumExp(const double* pot, const double* c, Eigen::Index len,
                 double inv_eps) {
  double mx = kNegInf;
  for (Eigen::Index k = 0; k < len; ++k) mx = std::max(mx, pot[k] - c[k]);
  if (mx == kNegInf) return kNegInf;
  double s = 0.0;
  for (Eigen::Index k = 0; k < len; ++k) {
    s += std::exp((pot[k] - c[k] - mx) * inv_eps);
  }
  return mx * inv_eps + std::log(s);
}

struct Workspace {
  const Eigen::MatrixXd& col_major;  // columns contiguous: LSE over i
  RowMajor row_major;                // rows contiguous: LSE over j
  Eigen::VectorXd log_a, log_b;
};

// Runs iterations at one eps until the row error <= tol or *iters reaches
// max_iters. Leaves the state after a g half-step (exact columns) when
// converged, after an f half-step otherwise.
void RunStage(const Workspace& w, const Eigen::VectorXd& a, double eps,
              double tol, int max_iters, Eigen::VectorXd& f, Eigen::VectorXd& g,
              int* iters) {
  const Eigen::Index n = f.size(), m = g.size();
  const double inv_eps = 1.0 / eps;
  Eigen::VectorXd lse_row(n);
  while (*iters < max_iters) {
    ++*iters;
    for (Eigen::Index j = 0; j < m; ++j) {
      g(j) = eps * (w.log_b(j) -
                    LogSumExp(f.data(), w.col_major.col(j).data(), n, inv_eps));
    }
    double row_err = 0.0;
    for (Eigen::Index i = 0; i < n; ++i) {
      lse_row(i) = LogSumExp(g.data(), w.row_major.row(i).data(), m, inv_eps);
      const double r = std::exp(f(i) * inv_eps + lse_row(i));
      row_err += std::abs((std::isnan(r) ? 0.0 : r) - a(i));
    }
    if (row_err <= tol) return;
    for (Eigen::Index i = 0; i < n; ++i) {
      f(i) = eps * (w.log_a(i) - lse_row(i));
    }
  }
}

}  // namespace

absl::StatusOr<SinkhornResult> Sinkhorn(const Eigen::MatrixXd& cost,
                                        const Eigen::VectorXd& a,
                                        const Eigen::VectorXd& b,
                                        const SinkhornOptions& options) {
  FT_RETURN_IF_ERROR(Validate(cost, a, b, options));
  const Eigen::Index n = cost.rows(), m = cost.cols();
  Workspace w{cost, cost, a.array().log(), b.array().log()};

  Eigen::VectorXd f = Eigen::VectorXd::Zero(n);
  Eigen::VectorXd g = Eigen::VectorXd::Zero(m);
  int iters = 0;
  double eps = options.epsilon;
  if (options.initial_epsilon > options.epsilon) {
    eps = options.initial_epsilon;
    const double stage_tol = std::max(options.tol, 1e-3);
    while (eps > options.epsilon && iters < options.max_iters) {
      RunStage(w, a, eps, stage_tol, options.max_iters, f, g, &iters);
      eps = std::max(options.epsilon, eps * options.scaling_factor);
    }
    eps = options.epsilon;
  }
  if (iters < options.max_iters) {
    RunStage(w, a, eps, options.tol, options.max_iters, f, g, &iters);
  }

  SinkhornResult out;
  out.plan.resize(n, m);
  const double inv_eps = 1.0 / eps;
  for (Eigen::Index j = 0; j < m; ++j) {
    for (Eigen::Index i = 0; i < n; ++i) {
      out.plan(i, j) = std::exp((f(i) + g(j) - cost(i, j)) * inv_eps);
    }
  }
  out.marginal_error =
      (out.plan.rowwise().sum() - a).cwiseAbs().sum() +
      (out.plan.colwise().sum().transpose() - b).cwiseAbs().sum();
  out.converged = out.marginal_error <= options.tol;
  out.iterations = iters;
  out.transport_cost = (out.plan.array() * cost.array()).sum();
  out.f = std::move(f);
  out.g = std::move(g);
  return out;
}

absl::StatusOr<SinkhornResult> Sinkhorn(const Eigen::MatrixXd& cost,
                                        const SinkhornOptions& options) {
  const Eigen::VectorXd a = Eigen::VectorXd::Constant(
      cost.rows(), 1.0 / std::max<Eigen::Index>(1, cost.rows()));
  const Eigen::VectorXd b = Eigen::VectorXd::Constant(
      cost.cols(), 1.0 / std::max<Eigen::Index>(1, cost.cols()));
  return Sinkhorn(cost, a, b, options);
}

}  // namespace flowtape::flows::matching
