// Invertibility you can check at run time: how well a flow's inverse undoes
// it at given samples, per layer and for the whole flow (Behrmann et al.
// 2021, "Understanding and mitigating exploding inverses in invertible
// neural networks": affine couplings reconstruct training-like inputs and
// blow up on others; additive couplings and Lipschitz-constrained residual
// flows do not).
//
// For a flow f (Forward, data -> base) at samples x [N, ...], z = f(x):
//   forward round trip   e_f = |f^-1(f(x)) - x|
//   inverse round trip   e_i = |f(f^-1(z)) - z|   (f^-1(z) is the first
//                        round trip's f^-1(f(x)), so three passes in all)
//   log-det gap          g   = |logdet_f(x) + logdet_f^-1(z)|  (~ 0)
//   local Lipschitz      Lip(f)(x)     = sigma_max(J_f(x)),
//                        Lip(f^-1)(z)  = sigma_max(J_f^-1(z)) = 1 /
//                        sigma_min(J_f(x)), condition     = Lip(f) Lip(f^-1) >=
//                        1
//   digits lost          d = log10(max(1, e / (eps max(1, |ref|_inf))))
//                        per sample, the larger of the two round trips
//                        (ref = x for e_f, z for e_i; eps = 2^-23 in
//                        float32, 2^-52 in float64; a non-finite error
//                        loses every digit: d = inf).
// Errors are reported per sample (the max and the mean of |.| over the
// sample's entries) and over the batch (max, mean over every entry).
// Round trips and log-det gaps are computed in the model's dtype and again in
// float64 (a float32 model is converted to float64 in place with Module::To
// semantics and back: float32 -> float64 -> float32 is exact, so the model
// ends bit-identical; no other thread may use it meanwhile, and accumulated
// gradients are dropped). The float64 pass tells a layer that is itself
// ill-conditioned (large error in both dtypes) from one that only lacks
// float32's precision. Lipschitz constants are estimated in float64 by power
// iteration on J'J per sample (v <- J'(J v) / |J'(J v)|, J v by a JVP and
// J'u by a VJP: autodiff/functional.h), stopping when every sample's
// residual |J'J v - s^2 v| <= power_tolerance s^2 (s = |J v|, |v| = 1) or
// after power_iterations steps; s converges from below. This assumes the
// flow maps samples independently (its Jacobian is block diagonal), as every
// flow outside an initialisation pass does.
//
// Layers: the steps of a Sequential, nested Sequentials flattened, each
// named "<path> <name>" ("3 affine_coupling", "0.2 additive_coupling"); a
// layer's input is the previous layer's output in the same dtype. The whole
// flow is measured by its own Forward/Inverse (not the composed layers). A
// flow that is not a Sequential is one layer.
//
// Failures of a numeric inverse (FlowResult::status) are reported per layer
// (their values are NaN, so d = inf), never returned as errors. Module
// buffers that a recorded call updates (spectral-norm vectors in kTrain
// mode) are restored before every evaluation and at the end, so the report
// sees one function and leaves the model as it found it. Stochastic
// estimators get Rng(seed, 1) afresh on every call (the same draws each time).
#ifndef FLOWTAPE_FLOWS_INVERTIBILITY_H_
#define FLOWTAPE_FLOWS_INVERTIBILITY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/flow.h"

namespace flowtape::flows {

struct InvertibilityOptions {
  Tensor context;              // [N, K] or undefined
  bool per_layer = true;       // also measure every layer (Sequential steps)
  bool lipschitz = true;       // power-iteration estimates (~5 passes a step)
  int power_iterations = 100;  // at most, per layer and direction
  double power_tolerance = 1e-9;  // relative residual (above)
  uint64_t seed = 0;              // start vectors, stochastic estimators
  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

// |a - b| over a batch: per sample and in all.
struct ErrorStats {
  std::vector<double> per_sample_max, per_sample_mean;  // [N]
  double max = 0.0, mean = 0.0;  // over all entries; NaN if any entry is
};

// The round trips of one layer in one dtype.
struct RoundTrip {
  ErrorStats forward;               // |f^-1(f(x)) - x|
  ErrorStats inverse;               // |f(f^-1(z)) - z|, z = f(x)
  ErrorStats logdet_gap;            // |logdet_f(x) + logdet_f^-1(z)|
  std::vector<double> digits_lost;  // [N]
  double max_digits_lost = 0.0;
  absl::Status status;  // the first failed pass (numeric inverse, ...)
};

struct LayerInvertibility {
  std::string name;  // "model", or "<path> <flow name>"
  RoundTrip native;  // in the model's dtype
  RoundTrip float64;
  // Per sample, float64 (empty without options.lipschitz).
  std::vector<double> lipschitz, inverse_lipschitz, condition;
  double max_lipschitz = 0.0, max_inverse_lipschitz = 0.0, max_condition = 0.0;
  int power_iterations = 0;  // the most either direction needed
};

struct Invertibility {
  DType dtype = kFloat64;  // the model's
  int64_t samples = 0;
  LayerInvertibility model;
  std::vector<LayerInvertibility> layers;  // empty without per_layer
  // Indices into `layers`, most digits lost (model dtype) first, ties
  // broken by float64 digits lost, then by condition number.
  std::vector<size_t> worst_layers;
};

// InvalidArgument for undefined or non-finite x, x of rank < 2 or without
// rows, a context whose rows differ from x's, or bad options.
absl::StatusOr<Invertibility> InvertibilityReport(
    const Flow& model, const Tensor& x,
    const InvertibilityOptions& options = {});

// One row per layer and one for the model (max over samples): round-trip
// errors in both dtypes, log-det gap, Lip(f), Lip(f^-1), condition, digits
// lost, status; then the layers that lose the most digits.
std::string FormatInvertibility(const Invertibility& report);

// The alarm of a training loop (training/train.h): empty when the model's
// round trips are finite (no numeric-inverse failure), its largest
// condition number is <= max_condition and its largest Lip(f^-1) <=
// max_inverse_lipschitz (a threshold <= 0 is not checked); otherwise one line
// saying which limit was passed, naming the layer that loses the most digits.
std::string InvertibilityAlarm(const Invertibility& report,
                               double max_condition,
                               double max_inverse_lipschitz);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_INVERTIBILITY_H_
