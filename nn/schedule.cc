#include "nn/schedule.h"

#include <cmath>
#include <utility>

#include "autodiff/check.h"

namespace flowtape::nn {

Schedule ConstantLr(double lr) {
  return [lr](int64_t) { return lr; };
}

Schedule StepDecayLr(double lr, int64_t step_size, double gamma) {
  FT_CHECK(step_size > 0, "step_decay_lr: step_size must be > 0, got ",
           step_size);
  return [=](int64_t t) {
    return lr * std::pow(gamma, static_cast<double>(t / step_size));
  };
}

Schedule ExponentialLr(double lr, double gamma) {
  return
      [=](int64_t t) { return lr * std::pow(gamma, static_cast<double>(t)); };
}

Schedule CosineAnnealingLr(double lr, int64_t t_max, double lr_min) {
  FT_CHECK(t_max > 0, "cosine_annealing_lr: t_max must be > 0, got ", t_max);
  return [=](int64_t t) {
    if (t >= t_max) return lr_min;
    double c =
        std::cos(M_PI * static_cast<double>(t) / static_cast<double>(t_max));
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + c);
  };
}

Schedule LinearWarmup(int64_t warmup_steps, Schedule after) {
  FT_CHECK(warmup_steps >= 0, "linear_warmup: negative warmup_steps ",
           warmup_steps);
  FT_CHECK(after != nullptr, "linear_warmup: empty schedule");
  return [warmup_steps, after = std::move(after)](int64_t t) {
    if (t < warmup_steps)
      return after(0) * static_cast<double>(t + 1) /
             static_cast<double>(warmup_steps);
    return after(t - warmup_steps);
  };
}

}  // namespace flowtape::nn
