#include "flows/matching/cfm.h"

#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "flows/matching/assignment.h"
#include "flows/matching/cost.h"
#include "flows/matching/sinkhorn.h"

namespace flowtape::flows::matching {
namespace {

// Rows `index` of x [N, d] as an Eigen matrix (float64).
Eigen::MatrixXd RowsOf(const Tensor& x, const std::vector<int64_t>& index) {
  const int64_t d = x.dim(1);
  Eigen::MatrixXd m(static_cast<Eigen::Index>(index.size()), d);
  for (size_t r = 0; r < index.size(); ++r)
    for (int64_t k = 0; k < d; ++k) m(r, k) = x[index[r] * d + k];
  return m;
}

// Couples rows `rows` of x0 with rows `rows` of x1 (one context group).
absl::Status CoupleGroup(const Tensor& x0, const Tensor& x1,
                         const std::vector<int64_t>& rows,
                         const FlowMatchingOptions& o, Rng& rng,
                         std::vector<IndexPair>* pairs) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (n == 1) {
    pairs->push_back({static_cast<int>(rows[0]), static_cast<int>(rows[0])});
    return absl::OkStatus();
  }
  FT_ASSIGN_OR_RETURN(Eigen::MatrixXd cost,
                      SquaredEuclideanCost(RowsOf(x0, rows), RowsOf(x1, rows)));
  std::vector<IndexPair> local;
  if (o.coupling == CouplingKind::kExactOt) {
    if (n > o.max_assignment_batch)
      return absl::InvalidArgumentError(absl::StrCat(
          "flow matching: exact OT coupling of ", n,
          " rows exceeds max_assignment_batch = ", o.max_assignment_batch,
          " (use the Sinkhorn coupling or a smaller batch)"));
    FT_ASSIGN_OR_RETURN(std::vector<int> sigma, SolveAssignment(cost));
    local = AssignmentToPairs(sigma);
  } else {
    const double scale = cost.maxCoeff();
    if (scale > 0) cost /= scale;
    SinkhornOptions so;
    so.epsilon = o.sinkhorn_epsilon;
    so.max_iters = o.sinkhorn_max_iters;
    so.tol = o.sinkhorn_tol;
    FT_ASSIGN_OR_RETURN(SinkhornResult plan, Sinkhorn(cost, so));
    // A plan off its marginals would bias the pairs: never used silently.
    if (!plan.converged)
      return absl::FailedPreconditionError(absl::StrCat(
          "flow matching: the Sinkhorn coupling of ", n,
          " rows did not converge: marginal error ", plan.marginal_error,
          " > sinkhorn_tol = ", o.sinkhorn_tol, " after ", plan.iterations,
          " iterations (sinkhorn_max_iters = ", o.sinkhorn_max_iters,
          ", sinkhorn_epsilon = ", o.sinkhorn_epsilon,
          "); raise sinkhorn_max_iters or sinkhorn_epsilon, or loosen "
          "sinkhorn_tol"));
    FT_ASSIGN_OR_RETURN(local,
                        SampleCoupling(plan.plan, static_cast<int>(n), rng));
  }
  for (const IndexPair& p : local)
    pairs->push_back(
        {static_cast<int>(rows[p.i]), static_cast<int>(rows[p.j])});
  return absl::OkStatus();
}

absl::Status CheckBatch(const Tensor& x1, const Tensor& context, int64_t d,
                        int64_t k) {
  if (x1.rank() != 2 || x1.dim(1) != d || x1.dim(0) == 0)
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: data must be [N >= 1, ", d, "], got ",
                     x1.shape().ToString()));
  if (k == 0 && context.defined())
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: unconditional field given a context ",
                     context.shape().ToString()));
  if (k > 0 && (!context.defined() || context.rank() != 2 ||
                context.dim(0) != x1.dim(0) || context.dim(1) != k))
    return absl::InvalidArgumentError(absl::StrCat(
        "flow matching: context must be [", x1.dim(0), ", ", k, "], got ",
        context.defined() ? context.shape().ToString() : "none"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CouplingKind> ParseCouplingKind(const std::string& name) {
  if (name == "independent") return CouplingKind::kIndependent;
  if (name == "exact_ot") return CouplingKind::kExactOt;
  if (name == "sinkhorn") return CouplingKind::kSinkhorn;
  return absl::InvalidArgumentError(
      absl::StrCat("flow matching: unknown coupling '", name,
                   "' (independent, exact_ot, sinkhorn)"));
}

const char* CouplingKindName(CouplingKind kind) {
  switch (kind) {
    case CouplingKind::kIndependent:
      return "independent";
    case CouplingKind::kExactOt:
      return "exact_ot";
    default:
      return "sinkhorn";
  }
}

absl::Status FlowMatchingOptions::Validate() const {
  if (max_assignment_batch < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: max_assignment_batch must be >= 1, got ",
                     max_assignment_batch));
  if (!(sinkhorn_epsilon > 0) || !std::isfinite(sinkhorn_epsilon))
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: sinkhorn_epsilon must be finite and > 0, "
                     "got ",
                     sinkhorn_epsilon));
  if (sinkhorn_max_iters < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: sinkhorn_max_iters must be >= 1, got ",
                     sinkhorn_max_iters));
  if (!(sinkhorn_tol > 0) || !std::isfinite(sinkhorn_tol))
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: sinkhorn_tol must be finite and > 0, got ",
                     sinkhorn_tol));
  return absl::OkStatus();
}

Tensor CfmLoss(const cnf::CnfDynamics& v, const ProbabilityPath& path,
               const Tensor& x0, const Tensor& x1, const Tensor& t,
               const Tensor& context) {
  PathSample s = path.Sample(x0, x1, t);
  Tensor pred = v(Cast(t, x0.dtype()), s.x, context);
  return Mean(Sum(Square(pred - s.velocity), 1));
}

absl::StatusOr<std::vector<IndexPair>> PairMinibatch(
    const Tensor& x0, const Tensor& x1, const Tensor& context,
    const FlowMatchingOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  if (x0.rank() != 2 || x0.shape() != x1.shape())
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: x0 ", x0.shape().ToString(), " and x1 ",
                     x1.shape().ToString(), " must both be [N, d]"));
  const int64_t n = x0.dim(0);
  std::vector<IndexPair> pairs;
  if (options.coupling == CouplingKind::kIndependent) {
    for (int64_t i = 0; i < n; ++i)
      pairs.push_back({static_cast<int>(i), static_cast<int>(i)});
    return pairs;
  }
  // Groups of rows with identical context values (one group without one).
  std::map<std::vector<double>, std::vector<int64_t>> groups;
  const int64_t k = context.defined() ? context.dim(1) : 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> key(k);
    for (int64_t j = 0; j < k; ++j) key[j] = context[i * k + j];
    groups[key].push_back(i);
  }
  for (const auto& [key, rows] : groups)
    FT_RETURN_IF_ERROR(CoupleGroup(x0, x1, rows, options, rng, &pairs));
  return pairs;
}

SourceSampler StandardNormalSource(int64_t dim) {
  return [dim](int64_t n, DType dtype, Rng& rng) {
    return Tensor::Randn({n, dim}, rng, dtype);
  };
}

absl::StatusOr<std::shared_ptr<FlowMatching>> FlowMatching::Create(
    std::shared_ptr<cnf::CnfDynamics> velocity,
    std::shared_ptr<ProbabilityPath> path, const FlowMatchingOptions& options,
    SourceSampler source) {
  if (velocity == nullptr || path == nullptr)
    return absl::InvalidArgumentError(
        "flow matching: null velocity field or path");
  FT_RETURN_IF_ERROR(options.Validate());
  if (!source) source = StandardNormalSource(velocity->dim());
  return std::shared_ptr<FlowMatching>(new FlowMatching(
      std::move(velocity), std::move(path), options, std::move(source)));
}

absl::StatusOr<Tensor> FlowMatching::Loss(const Tensor& data,
                                          const Tensor& data_context,
                                          Rng& rng) const {
  FT_RETURN_IF_ERROR(CheckBatch(data, data_context, velocity_->dim(),
                                velocity_->context_dim()));
  return LossOfRows(data, data_context, rng, 0, data.dim(0));
}

absl::StatusOr<Tensor> FlowMatching::LossOfRows(const Tensor& data,
                                                const Tensor& data_context,
                                                Rng& rng, int64_t begin,
                                                int64_t end) const {
  FT_RETURN_IF_ERROR(CheckBatch(data, data_context, velocity_->dim(),
                                velocity_->context_dim()));
  const int64_t n = data.dim(0);
  if (!(0 <= begin && begin < end && end <= n))
    return absl::InvalidArgumentError(
        absl::StrCat("flow matching: rows [", begin, ", ", end,
                     ") are not a nonempty part of a batch of ", n));
  // In the field's dtype (float64 data can train a float32 field).
  const DType dtype = velocity_->dtype();
  const Tensor x1 = Cast(data, dtype);
  const Tensor context =
      data_context.defined() ? Cast(data_context, dtype) : Tensor();
  // Every draw is made for the whole batch; only rows [begin, end) enter
  // the loss.
  Tensor x0 = source_(n, x1.dtype(), rng);
  Tensor t = Tensor::Rand({n, 1}, rng, x1.dtype());
  const bool whole = begin == 0 && end == n;
  auto part = [&](const Tensor& v) {
    return whole || !v.defined() ? v : Narrow(v, 0, begin, end - begin);
  };
  if (options_.coupling == CouplingKind::kIndependent)
    return CfmLoss(*velocity_, *path_, part(x0), part(x1), part(t),
                   part(context));
  FT_ASSIGN_OR_RETURN(std::vector<IndexPair> pairs,
                      PairMinibatch(x0, x1, context, options_, rng));
  std::vector<int64_t> is, js;
  for (int64_t k = begin; k < end; ++k) {
    is.push_back(pairs[k].i);
    js.push_back(pairs[k].j);
  }
  Tensor c = context.defined() ? IndexSelect(context, 0, js) : Tensor();
  return CfmLoss(*velocity_, *path_, IndexSelect(x0, 0, is),
                 IndexSelect(x1, 0, js), part(t), c);
}

}  // namespace flowtape::flows::matching
