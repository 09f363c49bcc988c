#include "training/nan_guard.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::training {

NanGuard::NanGuard(const nn::Module& model, const nn::Optimizer& optimizer,
                   const nn::Module* also, int64_t every)
    : a_(model, &optimizer, also), b_(model, &optimizer, also), every_(every) {
  FT_CHECK(every >= 1, "nan_guard: every must be >= 1, got ", every);
}

void NanGuard::Reset() {
  good_->Capture();
  good_updates_ = 0;
  pending_updates_ = -1;
}

void NanGuard::BeforeStep(int64_t step) {
  if ((step - 1) % every_ != 0) return;
  pending_->Capture();
  pending_updates_ = step - 1;
}

void NanGuard::Finite(int64_t step) {
  if (pending_updates_ != step - 1) return;
  std::swap(good_, pending_);
  good_updates_ = pending_updates_;
  pending_updates_ = -1;
}

bool NanGuard::SetGood(const char* data, size_t size, int64_t updates) {
  if (!good_->SetData(data, size)) return false;
  good_updates_ = updates;
  pending_updates_ = -1;
  return true;
}

int64_t NanGuard::Restore() const {
  good_->Restore();
  return good_updates_;
}

std::string NanGuard::Message(int64_t step, double loss,
                              double grad_norm) const {
  return absl::StrCat("stopped at step ", step, ": non-finite ",
                      std::isfinite(loss) ? "gradient" : "loss", " (loss ",
                      loss, ", grad norm ", grad_norm,
                      "); restored the state after ", good_updates_, " updates",
                      every_ > 1
                          ? absl::StrCat(", the last snapshot (every ", every_,
                                         " steps) with a finite loss")
                          : "");
}

}  // namespace flowtape::training
