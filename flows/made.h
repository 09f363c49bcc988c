// MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).
//
// A masked MLP whose outputs for input dimension i depend only on inputs j
// that come earlier in an ordering: with ord(i) in {1..D} the position of
// dimension i and m(k) the degree of hidden unit k,
//   input j  -> hidden k   allowed iff m(k) >= ord(j)
//   hidden k -> hidden k'  allowed iff m(k') >= m(k)
//   hidden k -> output i   allowed iff ord(i) > m(k)
// so d out_i / d x_j = 0 whenever ord(j) >= ord(i) (the autoregressive
// property). Hidden degrees lie in [1, D-1], or [0, D-1] with a context
// ({0} when D = 1), assigned cyclically (kSequential) or uniformly at random
// above the previous layer's minimum (kRandom), then sorted: hidden units
// are stored in ascending degree (inputs and outputs stay in data order), so
// with the natural or reversed ordering every mask is a staircase whose
// zero blocks nn/masked_matmul.h skips (a random ordering's first layer runs
// dense). Only the masks (buffers) carry the degrees, so a checkpoint with
// another unit order (older cyclic, unsorted degrees) loads and computes
// exactly. An optional context [N, K]
// feeds every hidden unit directly (one unmasked linear map per hidden
// layer, added before the activation); degree-0 units see only the context,
// so the parameters of the first dimension depend on it too.
//
// Layout: params_per_dim = P outputs per dimension, dimension-major: output
// column i * P + p is parameter p of dimension i, so Reshape(out, {N, D, P})
// gives per-dimension parameter vectors.
#ifndef FLOWTAPE_FLOWS_MADE_H_
#define FLOWTAPE_FLOWS_MADE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace flowtape::flows {

enum class Ordering { kNatural, kReversed, kRandom };
enum class HiddenDegrees { kSequential, kRandom };

struct MadeOptions {
  int64_t dim = 2;
  std::vector<int64_t> hidden = {64, 64};
  int64_t params_per_dim = 2;
  int64_t context_dim = 0;  // 0 = unconditional
  Ordering ordering = Ordering::kNatural;
  // When non-empty, overrides `ordering`: a permutation of 1..D, order[i] =
  // ord(i), the position of dimension i.
  std::vector<int64_t> order;
  HiddenDegrees hidden_degrees = HiddenDegrees::kSequential;
  nn::Activation activation = nn::Activation::kRelu;
  // Output layer starts at zero (autoregressive flows set this, so a fresh
  // flow is its transform at theta = 0 in every layer).
  bool zero_last = false;
  // OK iff dim >= 1, params_per_dim >= 1, at least one hidden layer, every
  // hidden size >= 1, context_dim >= 0 and `order` (if given) a permutation
  // of 1..dim; else InvalidArgument naming the field.
  absl::Status Validate() const;
};

class Made : public nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<Made>> Create(
      const MadeOptions& options, Rng& rng);
  // x [N, D], context [N, K] (or undefined) -> [N, D * P].
  Tensor operator()(const Tensor& x, const Tensor& context = Tensor()) const;

  int64_t dim() const { return options_.dim; }
  int64_t params_per_dim() const { return options_.params_per_dim; }
  int64_t context_dim() const { return options_.context_dim; }
  // order()[i] = ord(i) in 1..D (from the "order" buffer, so it matches the
  // masks after a checkpoint is loaded).
  std::vector<int64_t> order() const;

 private:
  Made(const MadeOptions& options, Rng& rng);
  MadeOptions options_;
  Tensor order_;  // buffer [D], ord(i) as numbers
  std::vector<std::shared_ptr<nn::MaskedLinear>> layers_;
  std::vector<std::shared_ptr<nn::Linear>> context_;  // K -> hidden l
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_MADE_H_
