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
// NaN guard as in train.h: a non-finite loss or gradient stops training and
// restores the last parameters with a finite loss.
#ifndef FLOWTAPE_TRAINING_REVERSE_KL_H_
#define FLOWTAPE_TRAINING_REVERSE_KL_H_

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/energies.h"
#include "flows/flow_model.h"
#include "nn/optim.h"
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
};

struct ReverseKlResult {
  int64_t steps = 0;  // updates applied (diverged: those of the restored ones)
  std::vector<double> free_energy;  // F per step at beta = 1 (minibatch)
  bool diverged = false;
  std::string message;
};

// F(q) = E_q[log q - log p~] by Monte Carlo with n samples (no recording).
double FreeEnergy(const flows::FlowModel& model, const LogDensityFn& log_p,
                  int64_t n, Rng& rng);

// InvalidArgument for batch_size or steps <= 0.
absl::StatusOr<ReverseKlResult> TrainReverseKl(const flows::FlowModel& model,
                                               const LogDensityFn& log_p,
                                               nn::Optimizer& optimizer,
                                               const ReverseKlOptions& options);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_REVERSE_KL_H_
