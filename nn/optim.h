// Optimizers over parameter tensors, reading the gradients that Backward()
// accumulated in p.grad(). Each Step() applies one update in place with the
// learning rate lr = schedule(t), t = updates applied so far (schedule.h),
// then increments t. Parameters whose grad() is undefined are skipped.
//
//   SGD  (PyTorch semantics, no dampening):
//     g = grad + wd p;  b = mu b + g;  d = nesterov ? g + mu b : b  (mu > 0)
//     p -= lr d                                                     (d = g if
//     mu = 0)
//   Adam (Kingma & Ba 2015; wd is L2 added to the gradient):
//     g = grad + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//     p -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)
//   with k the number of updates of this parameter so far, this one included
//   (PyTorch's per-parameter step: a parameter that first gets a gradient
//   late starts with a bias-corrected first step, not the global t).
//   AdamW (Loshchilov & Hutter 2019; decoupled weight decay):
//     p -= lr wd p, then the Adam update with wd = 0.
//
// Construction: Sgd::Create / Adam::Create / AdamW::Create(params or
// module, options) return InvalidArgument naming the field when
// options.Validate() fails (lr, eps, weight_decay, momentum finite and >= 0,
// eps > 0, betas in [0, 1), nesterov only with momentum > 0) or an
// entry of params is not a parameter (a constant with requires_grad):
//   nn::AdamOptions options;  // C++17: set fields one by one
//   options.lr = 1e-3;
//   FT_ASSIGN_OR_RETURN(auto adam, nn::Adam::Create(model, options));
//
// Gradient clipping (call between Backward() and Step()):
//   ClipGradNorm: n = sqrt(sum_p |grad p|^2) (computed scaled by the largest
//   entry, so huge or tiny gradients neither overflow nor underflow); if n >
//   max_norm every grad is scaled by max_norm / n. Returns n (before clipping);
//   NaN, with the gradients untouched, when any entry is NaN.
//   ClipGradValue: clamps every gradient entry to [-c, c].
//
// State: NamedState() lists every buffer under a stable name (shared storage,
// so writing into the returned tensors restores the optimizer): "step" (a
// scalar holding t), and per parameter "<name>.momentum" (SGD with mu > 0) or
// "<name>.exp_avg", "<name>.exp_avg_sq", "<name>.step" (Adam/AdamW; the
// parameter's own update count k, a scalar). Parameter names come
// from Module::NamedParameters(), or are "param<i>" for a plain list.
#ifndef FLOWTAPE_NN_OPTIM_H_
#define FLOWTAPE_NN_OPTIM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"
#include "nn/schedule.h"

namespace flowtape::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  void Step();      // one update of every parameter that has a gradient
  void ZeroGrad();  // drops the accumulated gradients
  int64_t step_count() const { return static_cast<int64_t>(step_.item()); }
  double lr() const { return schedule_(step_count()); }  // for the next Step
  void set_schedule(Schedule s);
  const NamedTensors& named_parameters() const { return params_; }
  NamedTensors NamedState() const;

 protected:
  // params must be parameters (Validate them first: aborts otherwise).
  Optimizer(NamedTensors params, double lr);
  // InvalidArgument naming the first entry that is not a parameter.
  static absl::Status ValidateParameters(const NamedTensors& params);
  static NamedTensors NameList(std::vector<Tensor> params);
  // Adds a zero buffer named "<param>.<slot>" per parameter (shaped like it,
  // or a scalar); returns them.
  std::vector<Tensor> AddSlot(const std::string& slot, bool scalar = false);
  // Updates parameter i (values p, gradient g: same dtype, as its slots) at
  // step t' = t + 1.
  virtual void Update(size_t i, Tensor& p, const Tensor& g, double lr,
                      int64_t t) = 0;

 private:
  NamedTensors params_;
  NamedTensors state_;
  // Slots shaped like their parameter (not the scalar counters), by index.
  std::vector<std::vector<Tensor>> param_slots_;
  Tensor step_ = Tensor::Scalar(0.0);
  Schedule schedule_;
};

struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  // InvalidArgument unless lr, momentum and weight_decay are >= 0 (all
  // finite) and nesterov has momentum > 0.
  absl::Status Validate() const;
};

class Sgd : public Optimizer {
 public:
  static absl::StatusOr<std::shared_ptr<Sgd>> Create(std::vector<Tensor> params,
                                                     const SgdOptions& options);
  static absl::StatusOr<std::shared_ptr<Sgd>> Create(const Module& module,
                                                     const SgdOptions& options);

 private:
  static absl::StatusOr<std::shared_ptr<Sgd>> CreateNamed(
      NamedTensors params, const SgdOptions& options);
  Sgd(NamedTensors params, const SgdOptions& options);
  void Update(size_t i, Tensor& p, const Tensor& g, double lr,
              int64_t t) override;
  SgdOptions o_;
  std::vector<Tensor> momentum_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 in the gradient; AdamW: decoupled
  // InvalidArgument unless lr >= 0, beta1, beta2 in [0, 1), eps > 0 and
  // weight_decay >= 0 (all finite).
  absl::Status Validate() const;
};

class Adam : public Optimizer {
 public:
  static absl::StatusOr<std::shared_ptr<Adam>> Create(
      std::vector<Tensor> params, const AdamOptions& options);
  static absl::StatusOr<std::shared_ptr<Adam>> Create(
      const Module& module, const AdamOptions& options);

 protected:
  Adam(NamedTensors params, const AdamOptions& options, bool decoupled);

 private:
  static absl::StatusOr<std::shared_ptr<Adam>> CreateNamed(
      NamedTensors params, const AdamOptions& options);
  void Update(size_t i, Tensor& p, const Tensor& g, double lr,
              int64_t t) override;
  AdamOptions o_;
  bool decoupled_;
  std::vector<Tensor> m_, v_, k_;  // k_: per-parameter update counts
};

class AdamW : public Adam {
 public:
  // AdamW's customary default decay is 1e-2; set options.weight_decay.
  static absl::StatusOr<std::shared_ptr<AdamW>> Create(
      std::vector<Tensor> params, const AdamOptions& options);
  static absl::StatusOr<std::shared_ptr<AdamW>> Create(
      const Module& module, const AdamOptions& options);

 private:
  static absl::StatusOr<std::shared_ptr<AdamW>> CreateNamed(
      NamedTensors params, const AdamOptions& options);
  AdamW(NamedTensors params, const AdamOptions& options)
      : Adam(std::move(params), options, /*decoupled=*/true) {}
};

// Returns the global gradient norm before clipping.
double ClipGradNorm(const std::vector<Tensor>& params, double max_norm);
void ClipGradValue(const std::vector<Tensor>& params, double clip);

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_OPTIM_H_
