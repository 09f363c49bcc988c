// Squeeze (space-to-depth 2x2, Dinh et al. 2017): a volume-preserving
// reshuffle of [N, C, H, W] into [N, 4C, H/2, W/2].
//   z[n, 4c + 2i + j, h, w] = x[n, c, 2h + i, 2w + j]    (i, j in {0, 1})
//   Forward logdet = Inverse logdet = 0.
// Both directions are one gather (IndexSelect) of the flattened pixels.
#ifndef FLOWTAPE_FLOWS_SQUEEZE_H_
#define FLOWTAPE_FLOWS_SQUEEZE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Squeeze : public Flow {
 public:
  // The input image shape C x H x W; InvalidArgument unless C >= 1 and H, W
  // are even and >= 2.
  static absl::StatusOr<std::shared_ptr<Squeeze>> Create(int64_t channels,
                                                         int64_t height,
                                                         int64_t width);
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "squeeze"; }

 private:
  Squeeze(int64_t channels, int64_t height, int64_t width);
  int64_t c_, h_, w_;
  std::vector<int64_t> forward_index_, inverse_index_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SQUEEZE_H_
