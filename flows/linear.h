// LinearFlow: an invertible linear map, the K = 1 flow. With a logistic base
// it is Infomax ICA (Bell & Sejnowski 1995): sources s are mixed as x = W s,
// and maximum likelihood learns the unmixing matrix A = W^-1.
//
// Parametrised directly by the unmixing matrix A [D, D] (so the density,
// the direction that training uses, costs one matrix product):
//   Forward(x):  z = A x          (batched: z = x A^T)
//                logdet = log|det A|                       (Slogdet)
//   Inverse(z):  x = A^-1 z = W z (LU solve; batched: x = (A^-1 z^T)^T)
//                logdet = -log|det A|
// Invertible iff det A != 0. Training can in principle approach a singular A;
// the log-likelihood's -inf at det A = 0 keeps a maximiser away from it.
// The context is ignored.
#ifndef FLOWTAPE_FLOWS_LINEAR_H_
#define FLOWTAPE_FLOWS_LINEAR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class LinearFlow : public Flow {
 public:
  // A = I (the identity) before training; InvalidArgument unless d >= 1.
  static absl::StatusOr<std::shared_ptr<LinearFlow>> Create(int64_t d);
  // Explicit unmixing matrix [D, D]; a singular or non-finite one is refused.
  static absl::StatusOr<std::shared_ptr<LinearFlow>> Create(
      const Tensor& unmixing);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "linear"; }

  const Tensor& unmixing() const { return a_; }  // A
  Tensor Mixing() const;                         // W = A^-1 (a constant)

 private:
  explicit LinearFlow(int64_t d);
  Tensor a_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_LINEAR_H_
