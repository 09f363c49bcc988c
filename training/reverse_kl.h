// Reverse-KL (variational) training of a flow q against an unnormalised
// target density p~(x) = Z p(x), the use of planar flows in Rezende & Mohamed
// 2015:
//   F(q) = E_q[log q(x) - log p~(x)] = KL(q || p) - log Z  >= -log Z
// estimated with reparametrised samples x = flow.Inverse(z0), z0 ~ base, whose
// log q(x) = log p0(z0) - log|det dx/dz0| (FlowModel::SampleWithLogProb).
// With annealing (as in the paper) step t minimises
//   E_q[log q(x) - beta_t log p~(x)],  beta_t = min(1, beta0 + t /
//   anneal_steps).
// KL(q || p) itself is F(q) + log Z when log Z is known (energies.h computes
// it by quadrature for U1-U4).
// NaN guard as in train.h (nan_guard.h): a non-finite loss or gradient
// stops training and restores the parameters, buffers and optimizer state
// from before the last step (of every guard_every-th) whose free energy was
// finite.
//
// Data parallel (options.communicator with N > 1 ranks; data_parallel.h,
// as TrainNll): each rank holds a replica and takes rows [B r / N,
// B (r + 1) / N) of every step's B samples; gradients and the reported
// free energy are all-reduced weighted by the rows, so the NaN guard,
// clipping and the optimizer step are identical on every rank; rank 0's
// state is broadcast before the first step and only rank 0 logs. The base
// draws z0 come from Rng(seed) on every rank, and every rank draws all B
// rows and keeps its own, so a deterministic flow trained on N ranks
// matches one process (up to the rounding of the summation order; tests:
// 1e-12 in float64 after 20 steps). A stochastic flow's own draws (e.g.
// the MCMC layers of an SNF) are made by each rank for its rows, from
// Rng(seed, kRankStream + r) when N > 1 (with N = 1 they continue the base
// draws' stream, as before): N ranks then train the same objective with
// other noise, equal in distribution, not bit for bit.
// TrainReverseKlThreads (train_threads.h) runs N replicas on N threads.
#ifndef FLOWTAPE_TRAINING_REVERSE_KL_H_
#define FLOWTAPE_TRAINING_REVERSE_KL_H_

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/energies.h"
#include "flows/flow_model.h"
#include "nn/optim.h"
#include "parallel/communicator.h"
#include "training/energies.h"

namespace flowtape::training {

// log p~(x) per row, [N]; differentiable in x.
using LogDensityFn = std::function<Tensor(const Tensor& x)>;
// log p~ = -U for one of the Rezende & Mohamed energies.
LogDensityFn EnergyLogDensity(Energy e);
// log p~ = -u for any energy (flows/energies.h).
LogDensityFn EnergyLogDensity(flows::EnergyPtr u);

struct ReverseKlOptions {
  int64_t batch_size = 256;
  int64_t steps = 2000;
  int64_t anneal_steps = 0;  // 0 = beta fixed at 1
  double beta0 = 0.01;
  double clip_grad_norm = 0.0;
  int64_t log_every = 200;  // 0 = silent
  uint64_t seed = 0;
  std::ostream* log = &std::cerr;
  // The NaN guard's snapshot interval in steps (>= 1; 1 = every step).
  int64_t guard_every = 1;

  // Data parallel (see above): this rank's group (nullptr = one process;
  // not owned) and the gradient all-reduce bucket size.
  parallel::Communicator* communicator = nullptr;
  size_t bucket_bytes = size_t{1} << 20;
  // TrainReverseKlThreads: replicas to run, as TrainOptions::threads (0 =
  // FLOWTAPE_NUM_THREADS capped so each replica gets min_rows_per_thread
  // samples) and a peer's timeout at a collective. TrainReverseKl itself
  // refuses threads > 1 without a communicator of that size.
  int threads = 0;
  int64_t min_rows_per_thread = 1024;
  double peer_timeout_seconds = 600.0;

  // InvalidArgument naming the first bad option: batch_size or steps < 1,
  // guard_every < 1, anneal_steps < 0, beta0 outside [0, 1], a negative or
  // NaN clip_grad_norm.
  absl::Status Validate() const;
};

struct ReverseKlResult {
  int64_t steps = 0;  // updates applied (diverged: those of the restored ones)
  std::vector<double> free_energy;  // F per step at beta = 1 (minibatch)
  bool diverged = false;
  std::string message;
  // Data parallel: ranks, and this rank's seconds in gradient all-reduces.
  int ranks = 1;
  double allreduce_seconds = 0.0;
};

// F(q) = E_q[log q - log p~] by Monte Carlo with n samples (no recording).
double FreeEnergy(const flows::FlowModel& model, const LogDensityFn& log_p,
                  int64_t n, Rng& rng);

// InvalidArgument for batch_size or steps <= 0, guard_every < 1, a batch
// smaller than the number of ranks, threads > 1 without a communicator of
// that size; a communicator's failure is returned as its Status.
absl::StatusOr<ReverseKlResult> TrainReverseKl(const flows::FlowModel& model,
                                               const LogDensityFn& log_p,
                                               nn::Optimizer& optimizer,
                                               const ReverseKlOptions& options);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_REVERSE_KL_H_
