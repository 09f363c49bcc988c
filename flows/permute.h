// Permute: reorders features (axis 1) by a fixed permutation; volume
// preserving. For vectors [N, D] axis 1 is the feature axis; for images
// [N, C, H, W] it permutes channels.
//
//   Forward(x)[:, i] = x[:, perm[i]],  Inverse(z)[:, perm[i]] = z[:, i],
//   logdet = 0 in both directions.
// Reverse(d) is perm = (d-1, ..., 0); RandomPermutation(d, rng) a uniform one.
// Coupling stacks put one between couplings so every feature gets transformed.
#ifndef FLOWTAPE_FLOWS_PERMUTE_H_
#define FLOWTAPE_FLOWS_PERMUTE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Permute : public Flow {
 public:
  // InvalidArgument unless perm is a permutation of 0..d-1.
  static absl::StatusOr<std::shared_ptr<Permute>> Create(
      std::vector<int64_t> perm);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "permute"; }
  const std::vector<int64_t>& perm() const { return perm_; }

 private:
  explicit Permute(std::vector<int64_t> perm);
  std::vector<int64_t> perm_, inverse_;
};

// (d-1, ..., 0) and a uniformly random permutation of 0..d-1;
// InvalidArgument unless d >= 1.
absl::StatusOr<std::shared_ptr<Permute>> Reverse(int64_t d);
absl::StatusOr<std::shared_ptr<Permute>> RandomPermutation(int64_t d, Rng& rng);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_PERMUTE_H_
