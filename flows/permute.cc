#include "flows/permute.h"

#include <algorithm>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {
absl::Status ValidatePermutation(const std::vector<int64_t>& perm) {
  std::vector<bool> seen(perm.size(), false);
  for (size_t i = 0; i < perm.size(); ++i) {
    int64_t p = perm[i];
    if (p < 0 || p >= static_cast<int64_t>(perm.size()) || seen[p])
      return absl::InvalidArgumentError(
          absl::StrCat("permute: entry ", i, " = ", p,
                       " makes the list not a permutation of 0..",
                       static_cast<int64_t>(perm.size()) - 1));
    seen[p] = true;
  }
  return absl::OkStatus();
}
}  // namespace

Permute::Permute(std::vector<int64_t> perm) : perm_(std::move(perm)) {
  inverse_.resize(perm_.size());
  for (size_t i = 0; i < perm_.size(); ++i) inverse_[perm_[i]] = i;
}

absl::StatusOr<std::shared_ptr<Permute>> Permute::Create(
    std::vector<int64_t> perm) {
  FT_RETURN_IF_ERROR(ValidatePermutation(perm));
  return std::shared_ptr<Permute>(new Permute(std::move(perm)));
}

FlowResult Permute::Forward(const Tensor& x, const Tensor&, Rng*) const {
  FT_CHECK(x.rank() >= 2 && x.dim(1) == static_cast<int64_t>(perm_.size()),
           "permute: input ", x.shape().ToString(), " vs ", perm_.size(),
           " features");
  return {IndexSelect(x, 1, perm_), Tensor::Zeros({x.dim(0)}, x.dtype())};
}

FlowResult Permute::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  FT_CHECK(z.rank() >= 2 && z.dim(1) == static_cast<int64_t>(perm_.size()),
           "permute: input ", z.shape().ToString(), " vs ", perm_.size(),
           " features");
  return {IndexSelect(z, 1, inverse_), Tensor::Zeros({z.dim(0)}, z.dtype())};
}

absl::StatusOr<std::shared_ptr<Permute>> Reverse(int64_t d) {
  if (d < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("reverse: needs d >= 1 features, got d = ", d));
  std::vector<int64_t> p(d);
  for (int64_t i = 0; i < d; ++i) p[i] = d - 1 - i;
  return Permute::Create(std::move(p));
}

absl::StatusOr<std::shared_ptr<Permute>> RandomPermutation(int64_t d,
                                                           Rng& rng) {
  if (d < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("random_permutation: needs d >= 1 features, got d = ", d));
  std::vector<int64_t> p(d);
  std::iota(p.begin(), p.end(), 0);
  rng.Shuffle(p);
  return Permute::Create(std::move(p));
}

}  // namespace flowtape::flows
