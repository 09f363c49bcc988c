// Sequential: the composition of flows f = f_K o ... o f_1 (data -> base).
//
//   Forward(x):  z_0 = x, z_k = f_k(z_{k-1}),  logdet = sum_k log|det df_k/dz|
//   Inverse(z):  runs f_K^-1, ..., f_1^-1 (reverse order), logdets summed.
//   InverseValue(z): the same order through each step's InverseValue.
// Every step receives the same context. The inverse is analytic only if
// every step's is.
#ifndef FLOWTAPE_FLOWS_SEQUENTIAL_H_
#define FLOWTAPE_FLOWS_SEQUENTIAL_H_

#include <memory>
#include <string>
#include <vector>

#include "flows/flow.h"

namespace flowtape::flows {

class Sequential : public Flow {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<Flow>> steps);
  // Appends a step (registered as parameter prefix "<index>."); returns this.
  Sequential& Add(std::shared_ptr<Flow> step);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult InverseValue(const Tensor& z, const Tensor& context = Tensor(),
                          Rng* rng = nullptr) const override;
  bool analytic_inverse() const override;
  std::string name() const override;

  size_t size() const { return steps_.size(); }
  const std::shared_ptr<Flow>& step(size_t i) const { return steps_[i]; }

 private:
  std::vector<std::shared_ptr<Flow>> steps_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SEQUENTIAL_H_
