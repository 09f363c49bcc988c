// Entropic optimal transport by Sinkhorn iterations in the log domain
// (Cuturi 2013; log-domain form as in Peyre & Cuturi, "Computational Optimal
// Transport", sec. 4.4), the minibatch coupling of OT-CFM (Tong et al. 2023).
//
// Problem: for a cost C [n, m], marginals a >= 0 (n), b >= 0 (m) with
// sum a = sum b, and epsilon > 0,
//   P* = argmin_{P >= 0, P 1 = a, P^T 1 = b}  <P, C> - eps H(P),
//   H(P) = -sum_ij P_ij (log P_ij - 1).
// Its solution has the Gibbs form, with dual potentials f (n), g (m):
//   P_ij = exp((f_i + g_j - C_ij) / eps)  ( = diag(e^{f/eps}) K
//   diag(e^{g/eps}),
//                                            K = exp(-C / eps) ).
// One iteration is two exact half-steps (block coordinate ascent on the dual),
//   g_j <- eps log b_j - eps LSE_i((f_i - C_ij) / eps)   (column sums = b)
//   f_i <- eps log a_i - eps LSE_j((g_j - C_ij) / eps)   (row sums = a)
// with LSE(z) = max z + log sum exp(z - max z), which never overflows or
// underflows to 0/0 however small eps is (the kernel K itself is never formed).
// Start: f = 0. a_i = 0 gives f_i = -inf and a zero row (likewise b_j, g_j).
//
// Stopping: after each g half-step the column sums are exact; the row sums
// r_i = exp(f_i/eps + LSE_j((g_j - C_ij)/eps)) come free with the next f
// half-step, and the loop stops once ||r - a||_1 <= tol. The result reports
//   marginal_error = ||P 1 - a||_1 + ||P^T 1 - b||_1
// recomputed from the returned P, and converged = (marginal_error <= tol).
// Hitting max_iters is reported (converged = false) with the last iterate;
// it is not an error.
//
// Epsilon scaling (optional warm start for small eps): with initial_epsilon >
// epsilon the iterations run at eps_0 = initial_epsilon, eps_{k+1} =
// max(epsilon, scaling_factor * eps_k), carrying f and g over; intermediate
// stages stop at marginal error max(tol, 1e-3), the last at tol. max_iters
// bounds the total over all stages; iterations counts them all.
//
// Iterations for a fixed tol grow quickly as eps shrinks, most when the
// unregularised optimum is nearly degenerate (two assignments of almost equal
// cost): the rate is linear but can be 1 - 1e-5 per iteration at eps = 0.01
// max|C|. Epsilon scaling shortens the approach, not that final rate. Rescale
// C (e.g. by its maximum, as torchcfm does) when picking eps. Cost per
// iteration: 2 n m exp. As eps -> 0 the transport cost approaches the exact OT
// cost OT_0 = min <P, C>: for unit mass (Shannon entropies Hs, Hs(P) <= Hs(a) +
// Hs(b) <= Hs(P_0) + min(Hs(a), Hs(b)) for any coupling and an optimal P_0),
//   0 <= <P*, C> - OT_0 <= eps min(Hs(a), Hs(b)) <= eps log min(n, m);
// uniform n = m: <P*, C> - OT_0 <= eps log n, and OT_0 = (optimal assignment
// cost) / n (Birkhoff).
//
// Errors (InvalidArgument): empty or non-finite C; a, b of the wrong sizes,
// negative or non-finite, zero total, or sums differing by more than 1e-9
// relative; eps not finite and > 0, or max |C| / eps > 1e290; max_iters < 1;
// tol not finite and > 0; initial_epsilon not 0 and not finite >= epsilon;
// scaling_factor not in (0, 1).
#ifndef FLOWTAPE_FLOWS_MATCHING_SINKHORN_H_
#define FLOWTAPE_FLOWS_MATCHING_SINKHORN_H_

#include <Eigen/Dense>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flowtape::flows::matching {

struct SinkhornOptions {
  double epsilon = 0.05;  // in the units of C
  int max_iters = 1000;
  double tol = 1e-9;             // on the L1 marginal error
  double initial_epsilon = 0.0;  // 0: no epsilon scaling
  double scaling_factor = 0.5;
  // InvalidArgument unless epsilon and tol are finite and > 0, max_iters >=
  // 1, initial_epsilon is 0 or finite and >= epsilon, and scaling_factor is
  // in (0, 1). Sinkhorn calls it (and checks epsilon against the costs).
  absl::Status Validate() const;
};

struct SinkhornResult {
  Eigen::MatrixXd plan;  // P [n, m]
  Eigen::VectorXd f;     // row potentials (n)
  Eigen::VectorXd g;     // column potentials (m)
  int iterations = 0;
  double marginal_error = 0.0;
  bool converged = false;
  double transport_cost = 0.0;  // <P, C>
};

absl::StatusOr<SinkhornResult> Sinkhorn(const Eigen::MatrixXd& cost,
                                        const Eigen::VectorXd& a,
                                        const Eigen::VectorXd& b,
                                        const SinkhornOptions& options = {});

// Uniform marginals a = 1/n, b = 1/m.
absl::StatusOr<SinkhornResult> Sinkhorn(const Eigen::MatrixXd& cost,
                                        const SinkhornOptions& options = {});

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_SINKHORN_H_
