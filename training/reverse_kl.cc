#include "training/reverse_kl.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "training/train.h"

namespace flowtape::training {

LogDensityFn EnergyLogDensity(Energy e) {
  return [e](const Tensor& x) { return -PotentialEnergy(e, x); };
}

LogDensityFn EnergyLogDensity(flows::EnergyPtr u) {
  return [u](const Tensor& x) { return -u->Value(x); };
}

double FreeEnergy(const flows::FlowModel& model, const LogDensityFn& log_p,
                  int64_t n, Rng& rng) {
  NoGradScope no_grad;
  auto s = model.SampleWithLogProb(n, rng);
  return Mean(s.log_prob - log_p(s.x)).item();
}

absl::StatusOr<ReverseKlResult> TrainReverseKl(const flows::FlowModel& model,
                                               const LogDensityFn& log_p,
                                               nn::Optimizer& optimizer,
                                               const ReverseKlOptions& o) {
  if (o.batch_size <= 0 || o.steps <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("train_reverse_kl: batch_size and steps must be positive,"
                     " got ",
                     o.batch_size, " and ", o.steps));
  const std::vector<Tensor> params = model.Parameters();
  Rng rng(o.seed);
  ReverseKlResult r;
  // The last parameters whose free energy was finite, after good_updates.
  auto last_good = SnapshotParameters(model);
  int64_t good_updates = 0;
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double beta =
        o.anneal_steps > 0 ? std::min(1.0, o.beta0 + static_cast<double>(step) /
                                                         o.anneal_steps)
                           : 1.0;
    optimizer.ZeroGrad();
    auto s = model.SampleWithLogProb(o.batch_size, rng);
    Tensor lp = log_p(s.x);
    const double f = Mean(s.log_prob - lp).item();
    Tensor loss = Mean(s.log_prob - beta * lp);
    double gnorm = 0.0;
    const bool finite_loss = std::isfinite(f) && std::isfinite(loss.item());
    if (finite_loss) {
      last_good = SnapshotParameters(model);
      good_updates = step - 1;
      Backward(loss);
      gnorm = o.clip_grad_norm > 0 ? nn::ClipGradNorm(params, o.clip_grad_norm)
                                   : GradNorm(params);
    }
    Tape::Get().Reset();
    if (!finite_loss || !std::isfinite(gnorm)) {
      RestoreParameters(model, last_good);
      r.steps = good_updates;
      r.diverged = true;
      r.message = absl::StrCat("stopped at step ", step, ": non-finite ",
                               finite_loss ? "gradient" : "free energy",
                               "; restored the parameters after ", good_updates,
                               " updates, the last with a finite free energy");
      if (o.log_every > 0) *o.log << r.message << std::endl;
      return r;
    }
    optimizer.Step();
    r.steps = step;
    r.free_energy.push_back(f);
    if (o.log_every > 0 && (step % o.log_every == 0 || step == o.steps))
      *o.log << absl::StrFormat("step %d/%d  F %.4f  beta %.3f", step, o.steps,
                                f, beta)
             << std::endl;
  }
  r.message = absl::StrCat("finished ", r.steps, " steps");
  return r;
}

}  // namespace flowtape::training
