// Conditional flow matching (Lipman et al. 2023; OT-CFM, Tong et al. 2023):
// simulation-free training of a continuous flow's velocity field.
//
// Loss, for a path (path.h) with sample (x_t, u_t) of (x0, x1, t):
//   L(theta) = E_{t ~ U[0,1], (x0, x1) ~ pi} |v_theta(t, x_t, c) - u_t|^2
// estimated on a minibatch as mean_i sum_k (v_ik - u_ik)^2 (CfmLoss; one t
// per row, c the context of x1's row). Its gradient equals that of the
// marginal flow-matching loss E |v_theta(t, x) - u_t(x)|^2, u_t(x) =
// E[u_t | x_t = x]: the two differ by a constant, so the marginal field u_t
// is the minimiser. The loss is a regression error, not a likelihood: the
// NLL of the trained flow comes from the Cnf (cfm_flow.h).
//
// Couplings pi of a minibatch (x0 [N, d] drawn from the source, x1 [N, d]
// data rows), PairMinibatch:
//   kIndependent: pi = p0 x q, the pairs (i, i).
//   kExactOt:     the optimal assignment sigma of C_ij = |x0_i - x1_j|^2
//                 (assignment.h): pairs (i, sigma(i)), N <= 512
//                 (max_assignment_batch; O(N^3) worst case).
//   kSinkhorn:    N pairs drawn i.i.d. from the entropic plan P of C / max C
//                 with eps = sinkhorn_epsilon (sinkhorn.h, coupling.h; as
//                 torchcfm's OTPlanSampler with normalised cost). P must
//                 converge: L1 marginal error <= sinkhorn_tol within
//                 sinkhorn_max_iters iterations, else the call fails
//                 (a plan off its marginals would bias the pairs; torchcfm,
//                 through POT, only warns).
// Either OT coupling keeps both marginals (x0 rows are i.i.d. source draws,
// x1 the data rows). With a context, pairs are formed only between rows of
// equal context (x1 row j carries c_j; rows are grouped by identical
// context values and each group is coupled on its own), so x0 given c is
// still the source (OT across contexts would make x0 depend on c); with
// continuous, all-distinct contexts every group is one row: independent.
//
// FlowMatching::Loss(x1, c, rng): converts x1 and c to the field's dtype
// (Module::dtype), draws x0 ~ source (default N(0, I), in that dtype),
// t ~ U[0, 1) per row, pairs by the coupling and returns
// CfmLoss on the pairs (x0_i, x1_j, c_j). Draws, in order: x0 (N d
// normals), t (N uniforms), then the coupling's (Sinkhorn: N uniforms).
// Errors (Status): an exact-OT batch above max_assignment_batch, a
// non-finite x1 (the cost), an x1 or context of the wrong shape
// (InvalidArgument); a Sinkhorn plan that did not converge
// (FailedPrecondition, naming the marginal error, the iterations and the
// options to change).
#ifndef FLOWTAPE_FLOWS_MATCHING_CFM_H_
#define FLOWTAPE_FLOWS_MATCHING_CFM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"
#include "flows/matching/coupling.h"
#include "flows/matching/path.h"

namespace flowtape::flows::matching {

enum class CouplingKind { kIndependent, kExactOt, kSinkhorn };

absl::StatusOr<CouplingKind> ParseCouplingKind(const std::string& name);
const char* CouplingKindName(CouplingKind kind);

struct FlowMatchingOptions {
  // InvalidArgument naming the field.
  absl::Status Validate() const;

  CouplingKind coupling = CouplingKind::kIndependent;
  int64_t max_assignment_batch = 512;
  double sinkhorn_epsilon = 0.05;  // relative to max_ij C_ij
  int sinkhorn_max_iters = 1000;
  double sinkhorn_tol = 1e-6;
};

// mean_i |v(t_i, x_t,i, c_i) - u_t,i|^2 with (x_t, u_t) = path.Sample(x0,
// x1, t); differentiable in v's parameters (and c). x0, x1 [N, d], t [N, 1],
// context [N, K] or undefined.
Tensor CfmLoss(const cnf::CnfDynamics& v, const ProbabilityPath& path,
               const Tensor& x0, const Tensor& x1, const Tensor& t,
               const Tensor& context = Tensor());

// The coupling of a minibatch (see the header comment); x0, x1 [N, d],
// context [N, K] or undefined.
absl::StatusOr<std::vector<IndexPair>> PairMinibatch(
    const Tensor& x0, const Tensor& x1, const Tensor& context,
    const FlowMatchingOptions& options, Rng& rng);

// Draws n source points [n, d] in `dtype`.
using SourceSampler = std::function<Tensor(int64_t n, DType dtype, Rng& rng)>;
SourceSampler StandardNormalSource(int64_t dim);

class FlowMatching {
 public:
  // `source` unset: StandardNormalSource(velocity->dim()).
  static absl::StatusOr<std::shared_ptr<FlowMatching>> Create(
      std::shared_ptr<cnf::CnfDynamics> velocity,
      std::shared_ptr<ProbabilityPath> path,
      const FlowMatchingOptions& options = {}, SourceSampler source = nullptr);

  absl::StatusOr<Tensor> Loss(const Tensor& x1, const Tensor& context,
                              Rng& rng) const;
  // The loss of rows [begin, end) of the minibatch x1 (all N rows): every
  // draw (x0, t, the coupling's) is made for all N rows exactly as Loss
  // makes it, then the mean is taken over the pairs begin..end-1 only
  // (pair k = (x0_i, x1_j, t_k), (i, j) the coupling's k-th pair). So
  // sum_r (b_r / N) LossOfRows(x1, c, rng_r, s_r, s_r + b_r) over a split
  // of [0, N) into parts of b_r rows, each with the same rng state, equals
  // Loss(x1, c, rng) in value and gradient, whatever the split:
  // data-parallel ranks each compute their part (the coupling is computed
  // on every rank). Loss(x1, c, rng) is LossOfRows(x1, c, rng, 0, N).
  // InvalidArgument unless 0 <= begin < end <= N.
  absl::StatusOr<Tensor> LossOfRows(const Tensor& x1, const Tensor& context,
                                    Rng& rng, int64_t begin, int64_t end) const;

  const std::shared_ptr<cnf::CnfDynamics>& velocity() const {
    return velocity_;
  }
  const ProbabilityPath& path() const { return *path_; }
  const FlowMatchingOptions& options() const { return options_; }

 private:
  FlowMatching(std::shared_ptr<cnf::CnfDynamics> velocity,
               std::shared_ptr<ProbabilityPath> path,
               const FlowMatchingOptions& options, SourceSampler source)
      : velocity_(std::move(velocity)),
        path_(std::move(path)),
        options_(options),
        source_(std::move(source)) {}
  std::shared_ptr<cnf::CnfDynamics> velocity_;
  std::shared_ptr<ProbabilityPath> path_;
  FlowMatchingOptions options_;
  SourceSampler source_;
};

}  // namespace flowtape::flows::matching

#endif  // FLOWTAPE_FLOWS_MATCHING_CFM_H_
