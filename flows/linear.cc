#include "flows/linear.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {

absl::StatusOr<std::shared_ptr<LinearFlow>> LinearFlow::Create(int64_t d) {
  if (d < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("linear: dimension d = ", d, " must be >= 1"));
  return std::shared_ptr<LinearFlow>(new LinearFlow(d));
}

LinearFlow::LinearFlow(int64_t d) {
  a_ = RegisterParameter("unmixing", Tensor::Eye(d));
}

absl::StatusOr<std::shared_ptr<LinearFlow>> LinearFlow::Create(
    const Tensor& unmixing) {
  if (unmixing.rank() != 2 || unmixing.dim(0) != unmixing.dim(1))
    return absl::InvalidArgumentError(
        absl::StrCat("linear: unmixing matrix must be square [D, D], got ",
                     unmixing.shape().ToString()));
  for (int64_t i = 0; i < unmixing.numel(); ++i)
    if (!std::isfinite(unmixing[i]))
      return absl::InvalidArgumentError(absl::StrCat(
          "linear: unmixing entry ", i, " = ", unmixing[i], " not finite"));
  double lad;
  {
    NoGradScope ng;
    lad = LogAbsDet(unmixing.Detach()).item();
  }
  if (!std::isfinite(lad))
    return absl::InvalidArgumentError(
        "linear: unmixing matrix is singular (det = 0): not invertible");
  std::shared_ptr<LinearFlow> f(new LinearFlow(unmixing.dim(0)));
  const std::vector<double> v = unmixing.ToVector();
  std::copy(v.begin(), v.end(), f->a_.mutable_data<double>());
  return f;
}

FlowResult LinearFlow::Forward(const Tensor& x, const Tensor&, Rng*) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == a_.dim(0), "linear.forward: input ",
           x.shape().ToString(), " vs matrix ", a_.shape().ToString());
  return {MatMulT(x, a_, false, true),
          Tensor::Zeros({x.dim(0)}, x.dtype()) + LogAbsDet(a_)};
}

FlowResult LinearFlow::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == a_.dim(0), "linear.inverse: input ",
           z.shape().ToString(), " vs matrix ", a_.shape().ToString());
  return {Transpose(Solve(a_, Transpose(z))),
          Tensor::Zeros({z.dim(0)}, z.dtype()) - LogAbsDet(a_)};
}

Tensor LinearFlow::Mixing() const {
  NoGradScope ng;
  return ::flowtape::Inverse(a_.Detach()).Detach();
}

}  // namespace flowtape::flows
