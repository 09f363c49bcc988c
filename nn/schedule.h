// Learning-rate schedules: a Schedule maps the optimizer's step count
// t = 0, 1, 2, ... (the number of updates already applied) to the learning
// rate used by update t + 1.
//
//   ConstantLr(lr):                  lr
//   StepDecayLr(lr, k, gamma):       lr * gamma^floor(t / k)
//   ExponentialLr(lr, gamma):        lr * gamma^t
//   CosineAnnealingLr(lr, T, min):   min + (lr - min) (1 + cos(pi t / T)) / 2
//                                    for t <= T, and min afterwards
//   LinearWarmup(W, s):              s(0) (t + 1) / W          for t < W
//                                    s(t - W)                  for t >= W
//     (the wrapped schedule starts its own clock after the warm-up, so any
//      schedule composes: LinearWarmup(100, CosineAnnealingLr(1e-3, 900)).)
#ifndef FLOWTAPE_NN_SCHEDULE_H_
#define FLOWTAPE_NN_SCHEDULE_H_

#include <cstdint>
#include <functional>

namespace flowtape::nn {

using Schedule = std::function<double(int64_t step)>;

Schedule ConstantLr(double lr);
Schedule StepDecayLr(double lr, int64_t step_size, double gamma);
Schedule ExponentialLr(double lr, double gamma);
Schedule CosineAnnealingLr(double lr, int64_t t_max, double lr_min = 0.0);
Schedule LinearWarmup(int64_t warmup_steps, Schedule after);

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_SCHEDULE_H_
