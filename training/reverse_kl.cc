#include "training/reverse_kl.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "training/data_parallel.h"
#include "training/nan_guard.h"
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

namespace {

absl::StatusOr<ReverseKlResult> Train(parallel::Communicator& comm,
                                      const flows::FlowModel& model,
                                      const LogDensityFn& log_p,
                                      nn::Optimizer& optimizer,
                                      const ReverseKlOptions& o) {
  const std::vector<Tensor> params = model.Parameters();
  FT_ASSIGN_OR_RETURN(DataParallel dp,
                      DataParallel::Create(comm, params, o.batch_size,
                                           o.bucket_bytes, "train_reverse_kl"));
  const bool sharded = dp.size() > 1;
  std::ostream* log = o.log_every > 0 && dp.lead() ? o.log : nullptr;
  // The base draws: one stream on every rank, all B rows drawn, this rank's
  // kept. A stochastic flow's draws: per rank when N > 1.
  Rng rng(o.seed);
  Rng rank_rng(o.seed, kRankStream + dp.rank());
  Rng& flow_rng = sharded ? rank_rng : rng;
  ReverseKlResult r;
  TrainResult reduce_stats;
  r.ranks = dp.size();
  NanGuard guard(model, optimizer, nullptr, o.guard_every);
  FT_RETURN_IF_ERROR(dp.BroadcastState(guard.tensors()));
  guard.Reset();
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double beta =
        o.anneal_steps > 0 ? std::min(1.0, o.beta0 + static_cast<double>(step) /
                                                         o.anneal_steps)
                           : 1.0;
    guard.BeforeStep(step);
    optimizer.ZeroGrad();
    // FlowModel::SampleWithLogProb, on this rank's rows of the B draws.
    Tensor z = model.base()->Sample(o.batch_size, rng);
    if (sharded) z = Narrow(z, 0, dp.begin(), dp.end() - dp.begin());
    const flows::FlowResult s = model.flow()->Inverse(z, Tensor(), &flow_rng);
    const Tensor log_q = model.base()->LogProb(z) - s.logdet;
    const Tensor lp = log_p(s.value);
    double values[2] = {Mean(log_q - lp).item(), 0.0};
    const Tensor loss = Mean(log_q - beta * lp);
    values[1] = loss.item();
    if (std::isfinite(values[0]) && std::isfinite(values[1])) Backward(loss);
    Tape::Get().Reset();
    // Gradients, F and the loss: weighted sums over ranks, the same on each.
    FT_RETURN_IF_ERROR(dp.Reduce(absl::MakeSpan(values), &reduce_stats));
    const double f = values[0];
    const bool finite_loss = std::isfinite(f) && std::isfinite(values[1]);
    double gnorm = std::numeric_limits<double>::quiet_NaN();
    if (finite_loss) {
      guard.Finite(step);
      gnorm = o.clip_grad_norm > 0 ? nn::ClipGradNorm(params, o.clip_grad_norm)
                                   : GradNorm(params);
    }
    if (!finite_loss || !std::isfinite(gnorm)) {
      optimizer.ZeroGrad();
      r.steps = guard.Restore();
      r.diverged = true;
      r.message = absl::StrCat(
          "stopped at step ", step, ": non-finite ",
          finite_loss ? "gradient" : "free energy",
          "; restored the parameters after ", r.steps,
          " updates (with the buffers and optimizer state)",
          o.guard_every > 1
              ? absl::StrCat(", the last snapshot (every ", o.guard_every,
                             " steps) with a finite free energy")
              : ", the last with a finite free energy");
      if (log) *log << r.message << std::endl;
      break;
    }
    optimizer.Step();
    r.steps = step;
    r.free_energy.push_back(f);
    if (log && (step % o.log_every == 0 || step == o.steps))
      *log << absl::StrFormat("step %d/%d  F %.4f  beta %.3f", step, o.steps, f,
                              beta)
           << std::endl;
  }
  r.allreduce_seconds = reduce_stats.allreduce_seconds;
  if (r.message.empty())
    r.message = absl::StrCat("finished ", r.steps, " steps");
  return r;
}

}  // namespace

absl::Status ReverseKlOptions::Validate() const {
  if (batch_size <= 0 || steps <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size and steps must be positive, got ", batch_size,
                     " and ", steps));
  if (guard_every < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("guard_every must be >= 1, got ", guard_every));
  if (anneal_steps < 0 || !(beta0 >= 0 && beta0 <= 1))
    return absl::InvalidArgumentError(
        absl::StrCat("anneal_steps must be >= 0 and beta0 in [0, 1], got ",
                     anneal_steps, " and ", beta0));
  if (!(clip_grad_norm >= 0))
    return absl::InvalidArgumentError(
        absl::StrCat("clip_grad_norm must be >= 0, got ", clip_grad_norm));
  return absl::OkStatus();
}

absl::StatusOr<ReverseKlResult> TrainReverseKl(const flows::FlowModel& model,
                                               const LogDensityFn& log_p,
                                               nn::Optimizer& optimizer,
                                               const ReverseKlOptions& o) {
  absl::Status s = o.Validate();
  if (!s.ok())
    s = absl::InvalidArgumentError(
        absl::StrCat("train_reverse_kl: ", s.message()));
  else
    s = CheckThreadsOption(o.threads, o.communicator, "train_reverse_kl",
                           "TrainReverseKlThreads");
  if (!s.ok()) {
    if (o.communicator != nullptr) o.communicator->Abort(s);
    return s;
  }
  parallel::SoloCommunicator solo;
  parallel::Communicator& comm =
      o.communicator != nullptr ? *o.communicator : solo;
  absl::StatusOr<ReverseKlResult> r = Train(comm, model, log_p, optimizer, o);
  if (!r.ok()) comm.Abort(r.status());
  return r;
}

}  // namespace flowtape::training
