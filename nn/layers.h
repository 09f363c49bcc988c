// Basic layers.
//   Linear:       y = x W + b,        x [N, in], W [in, out], b [out]
//                 (one tape node "linear": its value is all the tape keeps)
//   MaskedLinear: y = x (W * M) + b,  M a fixed 0/1 [in, out] mask (MADE);
//                 M is a buffer ("mask"), so checkpoints restore random masks;
//                 the product skips M's zero blocks (masked_matmul.h)
//   MLP:          Linear -> act -> ... -> Linear (no activation on the output)
// Weights start Xavier-uniform, biases zero. `zero_last` starts the MLP's last
// layer at zero (flows that should begin at the identity).
// Construction: Create returns InvalidArgument naming the bad argument
// (MaskedLinear: a mask that is not [in, out] with in, out >= 1 and 0/1
// entries; MLP: fewer than 2 sizes or a size < 1). Create is the only way
// to build them (the constructors are private); code holding arguments it
// has already validated (a flow's options) calls Create(...).value().
#ifndef FLOWTAPE_NN_LAYERS_H_
#define FLOWTAPE_NN_LAYERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::nn {

enum class Activation { kTanh, kRelu, kElu, kLeakyRelu, kSoftplus, kSigmoid };
Tensor Apply(Activation a, const Tensor& x);
absl::StatusOr<Activation> ParseActivation(const std::string& name);

class Linear : public Module {
 public:
  // in, out >= 1.
  static absl::StatusOr<std::shared_ptr<Linear>> Create(int64_t in, int64_t out,
                                                        Rng& rng,
                                                        bool bias = true);
  Tensor operator()(const Tensor& x) const;
  const Tensor& weight() const { return w_; }
  const Tensor& bias() const { return b_; }  // undefined when bias=false

 private:
  Linear(int64_t in, int64_t out, Rng& rng, bool bias);
  Tensor w_, b_;
};

class MaskedLinear : public Module {
 public:
  // mask [in, out] with 0/1 entries.
  static absl::StatusOr<std::shared_ptr<MaskedLinear>> Create(
      const Tensor& mask, Rng& rng);
  Tensor operator()(const Tensor& x) const;
  const Tensor& mask() const { return mask_; }

 private:
  MaskedLinear(const Tensor& mask, Rng& rng);
  Tensor w_, b_, mask_;
};

class MLP : public Module {
 public:
  // sizes = {in, hidden..., out}: at least 2, each >= 1.
  static absl::StatusOr<std::shared_ptr<MLP>> Create(
      const std::vector<int64_t>& sizes, Activation act, Rng& rng,
      bool zero_last = false);
  Tensor operator()(const Tensor& x) const;
  int64_t in_features() const { return sizes_.front(); }
  int64_t out_features() const { return sizes_.back(); }

 private:
  MLP(const std::vector<int64_t>& sizes, Activation act, Rng& rng,
      bool zero_last);
  std::vector<int64_t> sizes_;
  Activation act_;
  std::vector<std::shared_ptr<Linear>> layers_;
};

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_LAYERS_H_
