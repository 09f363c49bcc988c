// The flow zoo: every flow family by name, built to a common configuration,
// so experiments take --flow=NAME. Adding a family is one line in zoo.cc's
// table (plus its BUILD dep).
//
// A model is FlowModel(base, flow): base standard normal over the flow's
// output (logistic for NICE and ICA). Vector entries work on [N, D] with
// D = event[0]; image entries on [N, C, H, W] with event [C, H, W], and map
// to z of the same shape (unless flat_output: z [N, C*H*W]). A name
// may have one entry per domain (realnvp: MLP couplings on vectors,
// checkerboard conv couplings on images).
// MakeModel gives InvalidArgument for an unknown name or an event shape the
// family cannot take (e.g. glow on vectors).
//
// Base: config.base = BaseChoice::kGaussianMixture (vector entries only)
// replaces the family's base by a trainable Gaussian mixture of
// config.components diagonal components (flows/distribution.h's
// GaussianMixture: softmax weights, means drawn N(0, I), unit scales;
// normflows' GaussianMixture base), kGaussianMixtureFull by one of full
// covariances (FullGaussianMixture: Cholesky factors starting at I), built
// after the flow, so the flow's parameters do not depend on the base.
// BaseChoice::kFactorizedMixture (vector entries only) makes it
// flows/distribution.h's FactorizedMixture: independent coordinates, each a
// mixture of config.components 1-D Gaussians (independent factor analysis's
// source model, flows/ica.h). BaseChoice::kResampled (vector entries
// only) makes it flows/resampled.h's ResampledNormal: the standard normal
// reweighted by a learned acceptance a(z) = sigmoid(MLP(z)) (MLP of
// config.hidden sizes, tanh), truncation T = 100, S = 4096 normaliser
// samples (Stimper et al. 2022; fresh proposals each training step).
//
// snf, the stochastic normalizing flow of Wu, Koehler & Noe 2020
// (flows/snf.h) fitted to data: ceil(layers / 2) blocks of two RealNVP
// affine couplings, each followed (generative direction) by one unadjusted
// Langevin step with a learned step size eps = exp(a) (starting at 0.01).
// Data give no target energy, so every stochastic layer samples the base's
// energy |y|^2 / 2 (flows/snf.h's interpolated energies u_k with the
// standard normal as target: all equal the prior). Its LogProb(x) is the
// single-path estimate log p0(z) + sum of the Forward log-weights
// (flows/stochastic.h), whose exponential is unbiased for q(x): the NLL of
// one draw is an upper bound on -log q(x) in expectation (Jensen). The
// entry is `stochastic`; it needs D >= 2.
//
// dtype: MakeModel builds in float64 and converts the model to
// config.dtype (Module::To), so both precisions start from the same
// (rounded) parameters. The model takes data of either dtype (FlowModel
// converts it).
//
// Context: with context_dim > 0 every conditional family (takes_context)
// feeds the context [N, context_dim] to its conditioners, so log p(x | c)
// depends on c. Families with no conditioner network (ica, planar, radial,
// sylvester, householder, resflow, gf, snf) refuse a context: MakeModel returns
// InvalidArgument "flow 'X' does not support a context" rather than a model
// that silently ignores it.
#ifndef FLOWTAPE_MODELS_ZOO_H_
#define FLOWTAPE_MODELS_ZOO_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/dtype.h"
#include "autodiff/tensor.h"
#include "flows/flow.h"
#include "flows/flow_model.h"

namespace flowtape::models {

// The base a model gets: the family's own, a trainable Gaussian mixture
// (diagonal or full covariances) or a trainable factorized (per-coordinate)
// mixture, or a resampled standard normal.
enum class BaseChoice {
  kFamily,
  kGaussianMixture,
  kGaussianMixtureFull,
  kFactorizedMixture,
  kResampled
};

struct ModelConfig {
  Shape event = Shape{2};  // [D] or [C, H, W]
  int layers = 8;          // couplings / autoregressive layers / planar units
  std::vector<int64_t> hidden = {64, 64};  // MLP / MADE hidden sizes
  int64_t context_dim = 0;                 // 0 = unconditional
  // Image families (Glow): levels, steps per level, coupling channels.
  int levels = 2, depth = 4;
  int64_t channels = 64;
  // Spline families: bins and tail bound B (linear outside [-B, B]); bpf:
  // degree 2 bins on [-B, B]; sospf: polynomials in v / B on [-B, B],
  // linear tails beyond.
  int64_t bins = 8;
  double bound = 4.0;
  // Continuous families (ffjord, rnode): learn the integration time T.
  bool train_t = false;
  // Mixture components: the kernels per coordinate and layer of gf, and the
  // components of a mixture base (per coordinate for a factorized one).
  int64_t components = 8;
  BaseChoice base = BaseChoice::kFamily;
  DType dtype = kFloat64;  // the model's precision
  // The checks that need no family (MakeModel adds the family's own):
  // InvalidArgument unless event is [D] or [C, H, W], layers >= 1,
  // context_dim >= 0 and components in [1, 4096].
  absl::Status Validate() const;
};

enum class Domain { kVectors, kImages };
enum class BaseKind { kNormal, kLogistic };
using FlowFactory = std::function<absl::StatusOr<std::shared_ptr<flows::Flow>>(
    const ModelConfig&, Rng&)>;

struct ZooEntry {
  std::string name;
  std::string description;
  Domain domain;
  BaseKind base;
  FlowFactory make;
  bool flat_output = false;   // image flow whose z is [N, C*H*W]
  bool takes_context = true;  // false: context_dim > 0 is refused
  // The flow draws randomness (stochastic layers, flows/stochastic.h): its
  // Forward / Inverse need an rng, Forward(Inverse(z)) != z, and LogProb is
  // a stochastic estimate of log q(x) (low in expectation).
  bool stochastic = false;
};

const std::vector<ZooEntry>& ZooEntries();
std::vector<std::string> ZooNames();
// The entry for `name` on data of the given domain.
absl::StatusOr<ZooEntry> FindFlow(const std::string& name, Domain domain);

absl::StatusOr<std::shared_ptr<flows::FlowModel>> MakeModel(
    const std::string& name, const ModelConfig& config, Rng& rng);

// The tensors ("name" / "buffer/name", as a checkpoint stores them) of an
// autoregressive family (maf, iaf, nsf_ar) saved when its stack had a
// reversal layer between steps (steps named 0, 2, 4, ...; zoo.cc folds the
// reversals into the orderings now), rewritten in place to the current
// names and coordinates: old step 2j becomes step j, and for odd j its
// MADE is conjugated by the reversal (first layer's rows, output dimensions
// and "order" reversed), so the loaded model has the saved density. Any
// other tensors are left as they are.
void UpgradeFoldedReversals(
    const std::string& family, const ModelConfig& config,
    std::vector<std::pair<std::string, Tensor>>* tensors);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_ZOO_H_
