// Rate-distortion training of the lossy flow codec (compression/lossy.h),
// after Helminger et al. 2021, "Lossy image compression with normalizing
// flows": the flow and a learned factorised prior are trained for
//   L = R / D  +  lambda MSE
// at a fixed quantisation step, instead of for likelihood.
//
// Learned prior (LearnedLatentPrior): parameters mu [D] and log s [D] of the
// per-latent logistic p_d(z) = Logistic(z; mu_d, s_d) of lossy.h; Values()
// gives the LatentPrior a LossyCodec codes with. Create(init) returns
// InvalidArgument unless init has D >= 1 means and D scales, the means finite
// and the scales finite and > 0; it is the only way to build one (the
// constructor is private).
//
// Rate. The codec's symbol at z_hat = Delta_d k has the prior's mass over
// its bin, P_d(z_hat) = F((z_hat - mu_d + Delta_d/2) / s_d) - F((z_hat -
// mu_d - Delta_d/2) / s_d), F the logistic CDF. As a function of any t,
//   bits_d(t) = -log2 P_d(t)
//             = -[log sig(a) + log sig(-b) + log(-expm1(-Delta_d / s_d))]
//               / log 2,   a = (t - mu_d + Delta_d/2) / s_d,
//                          b = (t - mu_d - Delta_d/2) / s_d
// (sig(a) - sig(b) = sig(a) sig(-b) (1 - e^(b - a)): no cancellation), and
// LatentBits sums it over d: bits per image. At t = z_hat it is the ideal
// code length of the codec's symbol (LossyCodec::IdealBits) up to the
// tables' 2^-precision quantisation and the open edge bins; the container
// adds its header, checksum and rANS flush.
//
// Quantisation proxies (z = f(g(x)), Delta_d = Delta w_d as in lossy.h):
//   kUniformNoise     z~ = z + u, u ~ U(-Delta_d/2, Delta_d/2) (rng): the
//                     expected bits_d(z~) is the differential entropy of the
//                     prior convolved with the bin, smooth in everything;
//   kStraightThrough  z~ = z_hat in value, with dz~/dz = 1;
//   kRound            z~ = z_hat, no gradient to z (evaluation: the codec's
//                     own rate, up to the tables and container).
// Distortion: x~ = clamp(g^-1(f^-1(z~)), 0, L - 1) (lossy.h's decoder
// before rounding to integers); sq_error = sum over the image's pixels of
// (x~ - x)^2, the pixels' MSE is sq_error / D.
//
// Training (TrainRateDistortion): Adam on the flow's parameters (lr) and the
// prior's (prior_lr), minibatches drawn with replacement from `pixels`,
// loss = mean over the batch of bits / D + lambda sq_error / D, gradients
// clipped to norm `clip`. The flow trains in place (its parameters are
// shared with every handle). A non-finite loss stops training with
// FailedPrecondition naming the step.
//
// Choosing lambda for a step Delta: on the high-rate curve D(R) ~ c 2^(-2 R)
// (R bits per pixel, D the MSE) the slope is dD/dR = -2 log(2) D, and
// R + lambda D is stationary there for lambda = 1 / (2 log(2) D); with D the
// MSE that Delta gives the likelihood-trained flow, training at that lambda
// keeps the model near that rate (MatchedLambda).
#ifndef FLOWTAPE_COMPRESSION_LOSSY_RD_H_
#define FLOWTAPE_COMPRESSION_LOSSY_RD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "compression/lossy.h"
#include "nn/module.h"

namespace flowtape::compression {

class LearnedLatentPrior : public nn::Module {
 public:
  // Parameters from a fitted prior (float64; convert with To).
  static absl::StatusOr<std::shared_ptr<LearnedLatentPrior>> Create(
      const LatentPrior& init);
  const Tensor& mean() const { return mean_; }            // [D]
  const Tensor& log_scale() const { return log_scale_; }  // [D]
  // mu_d and s_d = exp(log s_d) as doubles.
  LatentPrior Values() const;

 private:
  explicit LearnedLatentPrior(const LatentPrior& init);
  Tensor mean_, log_scale_;
};

// bits_d(t) summed over d: [N] for t [N, D]; mean, log_scale, steps [D], all
// in t's dtype. Differentiable in t, mean and log_scale.
Tensor LatentBits(const Tensor& t, const Tensor& mean, const Tensor& log_scale,
                  const Tensor& steps);

enum class QuantizationProxy { kUniformNoise, kStraightThrough, kRound };

struct RateDistortionTerms {
  Tensor bits;      // [N] bits_d(z~) summed over d
  Tensor sq_error;  // [N] sum over pixels of (x~ - x)^2
};
// The terms above for integer pixels [N, C, H, W] at step Delta (steps Delta
// w_d, w_d = model.step_scale), recorded for gradients in the flow's dtype
// (the prior must be in it too). InvalidArgument for bad pixels, Delta not
// finite and > 0, a prior of another size, or kUniformNoise without an rng;
// the flow's failure status.
absl::StatusOr<RateDistortionTerms> RateDistortion(
    const LossyModel& model, const LearnedLatentPrior& prior,
    const Tensor& pixels, double delta, QuantizationProxy proxy, Rng* rng);

// 1 / (2 log(2) mse): the lambda at which the high-rate curve through `mse`
// is stationary (above).
double MatchedLambda(double mse);

struct RdTrainOptions {
  double delta = 1.0;    // quantisation step Delta
  double lambda = 0.01;  // per unit of pixel MSE, against bits per pixel
  int64_t steps = 300, batch = 64;
  double lr = 1e-4, prior_lr = 1e-3, clip = 100;
  QuantizationProxy proxy = QuantizationProxy::kUniformNoise;
  uint64_t seed = 0;
  // InvalidArgument naming the field: Delta, lambda, rates not finite and
  // > 0 (lambda >= 0), steps or batch < 1, proxy kRound (no gradient).
  absl::Status Validate() const;
};

struct RdStep {
  int64_t step;
  double loss, bpp, mse;  // of the step's batch, under the proxy
};

// Trains model.flow (in place) and `prior` as above. `on_step` (if set)
// sees every step. InvalidArgument as Validate and RateDistortion;
// FailedPrecondition for a non-finite loss.
absl::StatusOr<std::vector<RdStep>> TrainRateDistortion(
    const LossyModel& model, LearnedLatentPrior& prior, const Tensor& pixels,
    const RdTrainOptions& options,
    const std::function<void(const RdStep&)>& on_step = nullptr);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_LOSSY_RD_H_
