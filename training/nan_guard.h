// NanGuard: the training loops' divergence guard.
//
// A loop calls BeforeStep(step) before the forward pass of every step; on
// steps 1, 1 + every, 1 + 2 every, ... it copies the whole training state
// (ModuleState: parameters, buffers, optimizer state, and an optional second
// module such as a parameter EMA) into the `pending` snapshot. Once that
// step's loss is known to be finite, Finite(step) makes the pending snapshot
// the `good` one. When a loss or gradient is not finite, Restore() writes the
// good snapshot back, so the model, its buffers and the optimizer return
// together to the last state whose loss was finite:
//
//   restored state = state before step s*, s* = max{ s = 1 + k every :
//                                                     loss(s) finite }
//
// The two snapshots alternate: no allocation after construction.
#ifndef FLOWTAPE_TRAINING_NAN_GUARD_H_
#define FLOWTAPE_TRAINING_NAN_GUARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "autodiff/tensor.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "training/module_state.h"

namespace flowtape::training {

class NanGuard {
 public:
  // `also` may be null. `every` >= 1.
  NanGuard(const nn::Module& model, const nn::Optimizer& optimizer,
           const nn::Module* also, int64_t every);
  NanGuard(const NanGuard&) = delete;
  NanGuard& operator=(const NanGuard&) = delete;

  // The current state becomes the good one (after 0 updates).
  void Reset();
  void BeforeStep(int64_t step);
  void Finite(int64_t step);
  // Writes the good state back; returns how many updates it holds.
  int64_t Restore() const;
  // "stopped at step s: non-finite loss (loss L, grad norm G); restored the
  // state after N updates[, the last snapshot (every k steps) with a finite
  // loss]".
  std::string Message(int64_t step, double loss, double grad_norm) const;
  // The good snapshot and its updates (between steps no snapshot is
  // pending), e.g. to save with a checkpoint, and its replacement by a saved
  // one (false, nothing changed, when its size differs from the state's).
  const std::vector<char>& good_data() const { return good_->data(); }
  int64_t good_updates() const { return good_updates_; }
  bool SetGood(const char* data, size_t size, int64_t updates);
  // The state's tensors (shared storage), e.g. to broadcast before Reset().
  const std::vector<Tensor>& tensors() const { return good_->tensors(); }

 private:
  ModuleState a_, b_;
  ModuleState *good_ = &a_, *pending_ = &b_;
  int64_t every_, good_updates_ = 0, pending_updates_ = -1;
};

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_NAN_GUARD_H_
