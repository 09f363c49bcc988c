// Distribution: a base density for flows, with LogProb and Sample.
//
// Shapes: a distribution has an event shape E (e.g. [D] or [C, H, W]).
// LogProb(x) takes x [N, E...] and returns log p(x) per sample, shape [N]
// (summed over the event axes). Sample(n, rng) returns [n, E...].
// Samples are reparametrised where the family allows it (x = loc + scale*eps),
// so gradients flow from a sample to loc and log_scale (reverse-KL training).
//
// Families (per event coordinate x, summed over coordinates):
//   StandardNormal:  log p = -x^2/2 - log(2 pi)/2
//   DiagonalNormal:  y = (x - mu)/s,
//                    log p = -y^2/2 - log s - log(2 pi)/2
//                    learnable mu and log s (shape E)
//   Logistic:        y = (x - mu)/s,
//                    log p = -softplus(y) - softplus(-y) - log s
//                    (standard logistic by default: mu = 0, s = 1, fixed;
//                    NICE's prior and Infomax ICA's source density);
//                    sample: mu + s (log u - log(1 - u)), u ~ U(0, 1)
//   GaussianMixture: vectors x [N, D], pi = softmax(logits),
//                    log p(x) = logsumexp_k [log pi_k + log N(x; mu_k, S_k)],
//                    S_k = diag(s_k^2); learnable logits [K], mu, log s [K, D]
//   FullGaussianMixture: the same with full covariances S_k = L_k L_k^T,
//                    L_k lower triangular with diagonal exp(log s_k) > 0
//                    (learnable logits [K], mu, log s [K, D] and the strict
//                    lower triangles [K, D (D - 1) / 2], row by row):
//                    log N(x; mu, L L^T) = -|y|^2 / 2 - sum_j log L_jj
//                                          - D log(2 pi) / 2,
//                    y = L^-1 (x - mu) by a triangular solve per component;
//                    sample: mu_k + L_k eps (reparametrised given k)
//   FactorizedMixture: independent coordinates, each a K-component 1-D
//                    Gaussian mixture,
//                    log p(x) = sum_j logsumexp_k [log pi_jk
//                                                  + log N(x_j; mu_jk, s_jk^2)]
//                    learnable logits, mu, log s [D, K]. Its marginals can be
//                    super-Gaussian (mixed scales) or sub-Gaussian (split
//                    means), which lets ICA separate both kinds of sources.
// LogProbEstimate(x, rng) is what FlowModel::Score calls: log p(x) where a
// family's density needs a Monte Carlo estimate (flows/resampled.h's
// normaliser), drawn from `rng` while a tape records (a training step);
// every other family, and any call without rng or without recording, gives
// LogProb(x).
// Construction is through Create only, which returns InvalidArgument naming
// the problem: event shapes need rank 1..3 and every dimension >= 1
// (Distribution::ValidateEventShape); mixtures take MixtureOptions
// (components, dims >= 1, init_spread finite and >= 0); explicit parameter
// values must have positive, finite scales and shapes that agree.
// dtype: a distribution samples and scores in dtype(), the dtype of its
// parameters and buffers (every family has some: StandardNormal keeps its
// normalising constant, a fixed Logistic its loc and scale, as buffers), so
// Module::To converts it; LogProb's x must have that dtype.
#ifndef FLOWTAPE_FLOWS_DISTRIBUTION_H_
#define FLOWTAPE_FLOWS_DISTRIBUTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::flows {

// A K-component mixture in D dimensions (GaussianMixture,
// FullGaussianMixture: K components; FactorizedMixture: K per coordinate).
struct MixtureOptions {
  int64_t components = 1;    // K
  int64_t dims = 1;          // D
  double init_spread = 1.0;  // Gaussian mixtures: means ~ N(0, spread^2)
  // InvalidArgument unless K, D >= 1 and init_spread is finite and >= 0.
  absl::Status Validate() const;
};

class Distribution : public nn::Module {
 public:
  // x [N, E...] -> log p(x) [N].
  virtual Tensor LogProb(const Tensor& x) const = 0;
  // LogProb(x), or a fresh Monte Carlo estimate of it (see above).
  virtual Tensor LogProbEstimate(const Tensor& x, Rng* rng) const {
    (void)rng;
    return LogProb(x);
  }
  // [n, E...] samples.
  virtual Tensor Sample(int64_t n, Rng& rng) const = 0;
  const Shape& event_shape() const { return event_shape_; }
  int64_t event_numel() const { return event_shape_.numel(); }
  virtual std::string name() const = 0;

  // InvalidArgument naming `who` unless the rank is 1..3 and every
  // dimension >= 1.
  static absl::Status ValidateEventShape(const char* who,
                                         const Shape& event_shape);

 protected:
  // A valid event shape (ValidateEventShape; aborts otherwise).
  explicit Distribution(const Shape& event_shape);
  // Checks x is [N, E...] (aborts naming `who` otherwise).
  void CheckEvent(const char* who, const Tensor& x) const;
  // [n, E...].
  Shape BatchShape(int64_t n) const;

 private:
  Shape event_shape_;
};

class StandardNormal : public Distribution {
 public:
  static absl::StatusOr<std::shared_ptr<StandardNormal>> Create(
      const Shape& event_shape);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "standard_normal"; }

 private:
  explicit StandardNormal(const Shape& event_shape);
  Tensor log_norm_;  // buffer: -|E| log(2 pi) / 2
};

class DiagonalNormal : public Distribution {
 public:
  // Starts at mu = 0, s = 1; both learnable.
  static absl::StatusOr<std::shared_ptr<DiagonalNormal>> Create(
      const Shape& event_shape);
  // Given mean and standard deviation (shape E, scale > 0).
  static absl::StatusOr<std::shared_ptr<DiagonalNormal>> Create(
      const Tensor& loc, const Tensor& scale);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "diagonal_normal"; }
  const Tensor& loc() const { return loc_; }
  const Tensor& log_scale() const { return log_scale_; }

 private:
  explicit DiagonalNormal(const Shape& event_shape);
  Tensor loc_, log_scale_;
};

class Logistic : public Distribution {
 public:
  // Standard logistic (mu = 0, s = 1); learnable parameters if `learnable`.
  static absl::StatusOr<std::shared_ptr<Logistic>> Create(
      const Shape& event_shape, bool learnable = false);
  static absl::StatusOr<std::shared_ptr<Logistic>> Create(
      const Tensor& loc, const Tensor& scale, bool learnable = false);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "logistic"; }

 private:
  Logistic(const Shape& event_shape, bool learnable);
  Tensor loc_, log_scale_;  // parameters if learnable, else buffers
};

class GaussianMixture : public Distribution {
 public:
  // K components in D dimensions: equal weights, means ~ N(0, init_spread^2),
  // unit scales; all learnable.
  static absl::StatusOr<std::shared_ptr<GaussianMixture>> Create(
      const MixtureOptions& options, Rng& rng);
  // weights [K] (positive, normalised here), means [K, D], scales [K, D] > 0.
  static absl::StatusOr<std::shared_ptr<GaussianMixture>> Create(
      const Tensor& weights, const Tensor& means, const Tensor& scales);
  Tensor LogProb(const Tensor& x) const override;
  // Component by weight, then mean + scale * eps (reparametrised given k).
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "gaussian_mixture"; }
  int64_t num_components() const { return means_.dim(0); }

 private:
  GaussianMixture(const Tensor& logits, const Tensor& means,
                  const Tensor& log_scales);
  Tensor logits_, means_, log_scales_;
};

class FullGaussianMixture : public Distribution {
 public:
  // K components in D dimensions: equal weights, means ~ N(0, init_spread^2),
  // L = I; all learnable.
  static absl::StatusOr<std::shared_ptr<FullGaussianMixture>> Create(
      const MixtureOptions& options, Rng& rng);
  // weights [K] (positive, normalised here), means [K, D], scale_tril
  // [K, D, D]: lower triangular (zeros above the diagonal), diagonal > 0.
  static absl::StatusOr<std::shared_ptr<FullGaussianMixture>> Create(
      const Tensor& weights, const Tensor& means, const Tensor& scale_tril);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "full_gaussian_mixture"; }
  int64_t num_components() const { return means_.dim(0); }
  // The Cholesky factors L [K, D, D] (recorded: a function of the parameters).
  Tensor ScaleTril() const;

 private:
  FullGaussianMixture(const Tensor& logits, const Tensor& means,
                      const Tensor& log_scales, const Tensor& lower);
  Tensor logits_, means_, log_scales_, lower_;
  // Where each of L's D * D entries comes from in [0, exp(log s), lower]:
  // 0 above the diagonal, 1 + j on it, 1 + D + p below it.
  std::vector<int64_t> gather_;
};

class FactorizedMixture : public Distribution {
 public:
  // D coordinates, K components each: means spread over [-1, 1], scales 1,
  // equal weights; all learnable (options.init_spread is not used).
  static absl::StatusOr<std::shared_ptr<FactorizedMixture>> Create(
      const MixtureOptions& options);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t n, Rng& rng) const override;
  std::string name() const override { return "factorized_mixture"; }

 private:
  FactorizedMixture(int64_t d, int64_t k);
  Tensor logits_, means_, log_scales_;  // [D, K]
};

// The component weights of a mixture with logits a: exp(a_c - max a) for
// the k entries c = offset ... offset + k - 1 of logits (read flat; a
// constant read, no gradient), i.e. softmax(a) up to a positive factor, as
// Rng::Categorical takes them. Every mixture here (the Gaussian mixtures
// above, manifolds::FlowMixture) draws its components with these.
// Logits that define no distribution (an entry NaN or +inf, or every entry
// -inf; e.g. after an optimizer step that overflowed) give an empty vector,
// and the mixture's Sample then returns rows of NaN (a Gaussian mixture's
// samples, a FactorizedMixture's if any coordinate's logits are such, a
// FlowMixture's), as its LogProb is NaN there: the NaN guard and the
// training loop's model check report it rather than the draw aborting.
std::vector<double> MixtureWeights(const Tensor& logits, int64_t offset,
                                   int64_t k);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_DISTRIBUTION_H_
