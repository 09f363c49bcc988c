// Lossy image compression with a normalizing flow (after Helminger et al.
// 2021, "Lossy image compression with normalizing flows"): quantise the
// latents of an invertible image model and entropy-code them with rANS under
// a factorised prior.
//
// Model (LossyModel). Integer pixels x in {0..L-1}^D, [N, C, H, W], map to
// the flow's input y (PixelMap), then to latents z = f(y) in R^D:
//   kIdentity: y = x                                       (pixel units)
//   kLogit:    y = logit(alpha + (1 - 2 alpha) (x + 1/2) / L)
//              (models/image_flow.h's transform at the bin centre)
// The prior is factorised, one logistic per latent dimension d,
//   p_d(z) = Logistic(z; mu_d, s_d),  FitLatentPrior: mu_d = mean, s_d =
//   sqrt(3) / pi * std of training latents (the logistic's moments).
//
// Codec at step Delta (LossyCodec). Dimension d is quantised with step
// Delta_d = Delta w_d (w_d = LossyModel::step_scale, default 1) and has the
// symbols
//   k = 0..K_d - 1 <-> z_hat = Delta_d (c_d - h_d + k),
//   c_d = round(mu_d / Delta_d),  h_d = ceil(kLossyTailScales s_d / Delta_d)
//   + 1,  K_d = 2 h_d + 1,
// and quantisation is q_d(z) = clamp(round(z / Delta_d) - c_d + h_d, 0,
// K_d - 1) (z_hat = Delta_d round(z / Delta_d) unless z is more than
// ~kLossyTailScales scales from mu_d). Symbol k has the prior's mass over
// its bin [z_hat - Delta_d/2, z_hat + Delta_d/2] (edge bins open), i.e. the
// discretised logistic of frequencies.h with mean mu_d / Delta_d - c_d + h_d
// and scale s_d / Delta_d in symbol units, quantised to 2^precision_bits.
//
// Step scales (SensitivityStepScales). At high rate the error of latent d
// reaches the pixels as |J_d|^2 Delta_d^2 / 12 (J = dx/dz of the decoder
// g^-1 o f^-1, J_d its column d), and its rate falls as -log2 Delta_d; the
// sum of rates at a fixed total distortion is least when every latent adds
// the same distortion (reverse water-filling), Delta_d proportional to
// 1 / |J_d|. The estimate is E|J_d|^2 = E_v (J^T v)_d^2 over Rademacher
// probes v at the latents of given images, and
//   w_d = clamp(G / sqrt(E|J_d|^2), 1/kLossyMaxStepRatio, kLossyMaxStepRatio),
// G the geometric mean of sqrt(E|J_d|^2) (so prod w_d ~ 1 and Delta keeps
// its scale).
//
// Rate and distortion:
//   rate       R = -sum_{i,d} log2 P_d(k_{i,d})   bits (IdealBits); the
//              stream's length obeys rans.h's bound around it;
//   decoding   x_hat = clamp(g^-1(f^-1(z_hat)), 0, L - 1)  (continuous;
//              round it for an 8-bit image);
//   distortion MSE = mean (x - x_hat)^2,  PSNR = 10 log10((L - 1)^2 / MSE).
// For an orthogonal flow with kIdentity, |x - x_hat| <= |z - z_hat| (the
// clamp only moves x_hat towards [0, L - 1], which holds x), so MSE <=
// max_d Delta_d^2 / 4 while no latent is clamped.
//
// Container (Encode / Decode), integers little-endian:
//   0  "FTLY"              magic
//   4  uint32 version = 1
//   8  float64 Delta (bits)
//   16 uint64 fingerprint of the codec: FNV-1a over D, L, pixel map, alpha,
//      Delta, precision, every mu_d, s_d, w_d and the flow's parameters
//      (bits)
//   24 uint32 count N, C, H, W
//   40 uint64 stream bytes S
//   48 the rANS stream (rans.h) of the N D symbols, image by image, d in
//      order of the flattened latent
//   48 + S  uint32 CRC-32 (zlib) of bytes [0, 48 + S)
// Decode returns DataLoss for a truncated or corrupt buffer (size, magic,
// version, CRC, or a stream the tables do not decode), FailedPrecondition
// for a container of another codec (Delta, fingerprint, image shape), never
// aborts, and bounds N by kLossyMaxSymbols before allocating.
//
// Determinism: the frequency tables depend only on (mu_d, s_d, Delta_d,
// precision) and are built in float64 by frequencies.h (deterministic_math,
// -ffp-contract=off, no threads); this file, which also quantises (z /
// Delta_d, std::round) and dequantises (Delta_d (c_d - h_d + k)), is compiled
// with -ffp-contract=off too. So an encoder and a decoder holding the same
// prior and step scales (part of the model, like the flow's weights: the
// fingerprint checks them) build bit-identical tables on any platform
// frequencies.h covers, and a container decodes to the same symbols and
// bit-identical z_hat everywhere. What is not promised across builds and
// machines: the latents z = f(g(x)) are ordinary float code (autodiff/ and
// flows/ kernels, where multiply-adds may fuse and threads split sums;
// kLogit calls libm's log), so the same pixels can give another symbol where
// a latent lies within a rounding of a bin edge, hence other (equally valid)
// bytes; and x_hat = g^-1(f^-1(z_hat)) is reproducible on one build and
// machine, elsewhere equal up to floating-point rounding (it never feeds the
// coder). The bytes are the same everywhere when the latents are exact, e.g.
// a permutation flow with kIdentity, which
// tests/compression:codec_golden_test pins (default and -O2 -march=native).
#ifndef FLOWTAPE_COMPRESSION_LOSSY_H_
#define FLOWTAPE_COMPRESSION_LOSSY_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "compression/frequencies.h"
#include "flows/flow.h"

namespace flowtape::compression {

inline constexpr double kLossyTailScales = 20.0;
inline constexpr int64_t kLossyMaxSymbols = int64_t{1} << 28;
inline constexpr size_t kLossyHeaderBytes = 48;
// Images per flow pass (Latents, Reconstruct): bounds their memory.
inline constexpr int64_t kLossyChunk = 256;
inline constexpr double kLossyMaxStepRatio = 16.0;

enum class PixelMap { kIdentity, kLogit };

struct LatentPrior {
  std::vector<double> mean, scale;  // per latent dimension, z units
};

struct LossyModel {
  std::shared_ptr<const flows::Flow> flow;
  Shape image;  // [C, H, W] of the pixels
  Shape event;  // the flow's input per image ([C, H, W] or [C H W])
  int levels = 256;
  PixelMap pixel_map = PixelMap::kLogit;
  double alpha = 0.05;  // kLogit only
  LatentPrior prior;
  std::vector<double> step_scale;  // w_d per latent; empty: all 1
};

// OK for pixels [N >= 1, C, H, W] of integers in 0..L-1; else
// InvalidArgument naming the first bad one.
absl::Status CheckPixels(const LossyModel& model, const Tensor& pixels);
// y = g(x), the flow's input [N, event...] in the flow's dtype (recorded;
// pixels as CheckPixels accepts).
Tensor FlowInput(const LossyModel& model, const Tensor& pixels);
// g^-1(f^-1(z)) for latents z [N, D] in the flow's dtype: [N, D], not
// clamped, recorded; the flow's failure status.
absl::StatusOr<Tensor> DecodeLatents(const LossyModel& model, const Tensor& z);

// z = f(g(x)) as float64 rows [N, D], computed in the flow's dtype without
// recording, kLossyChunk images at a time. InvalidArgument for pixels that are
// not [N, C, H, W] integers in 0..L-1; the flow's failure status;
// FailedPrecondition for a non-finite latent.
absl::StatusOr<Tensor> Latents(const LossyModel& model, const Tensor& pixels);
// w_d (above) from `probes` Rademacher VJPs of the decoder at the latents of
// `pixels` (in kLossyChunk chunks). Errors as Latents, and InvalidArgument
// for probes < 1.
absl::StatusOr<std::vector<double>> SensitivityStepScales(
    const LossyModel& model, const Tensor& pixels, int probes, Rng& rng);

// The prior fitted to latents [N, D] (N >= 2): mean and sqrt(3)/pi * std
// per column, the scale floored at 1e-6. InvalidArgument for non-finite rows.
absl::StatusOr<LatentPrior> FitLatentPrior(const Tensor& latents);

struct Distortion {
  double mse = 0, psnr = 0;  // psnr = +inf for mse = 0
};
// Over all entries of two tensors of the same shape, with peak L - 1.
Distortion MeasureDistortion(const Tensor& x, const Tensor& x_hat, int levels);

class LossyCodec {
 public:
  // InvalidArgument: no flow, shapes whose sizes differ, levels < 2, alpha
  // outside [0, 1/2) for kLogit, a prior of another size or with non-finite
  // means or scales <= 0, step scales not empty or D finite values > 0,
  // Delta not finite and > 0, precision outside 8..24, mu_d / Delta_d beyond
  // 2^40, or K_d > 2^(precision - 1).
  static absl::StatusOr<LossyCodec> Create(LossyModel model, double delta,
                                           int precision_bits = 20);

  double delta() const { return delta_; }
  double step(int64_t d) const { return steps_[d]; }  // Delta_d
  int64_t dims() const { return static_cast<int64_t>(tables_.size()); }
  uint64_t fingerprint() const { return fingerprint_; }
  const LossyModel& model() const { return model_; }

  // The direct computation, step by step: symbols of latents [N, D] (int32,
  // N D of them), their values z_hat [N, D], and x_hat [N, C, H, W].
  absl::StatusOr<std::vector<int32_t>> Quantize(const Tensor& latents) const;
  Tensor Dequantize(absl::Span<const int32_t> symbols) const;
  absl::StatusOr<Tensor> Reconstruct(const Tensor& z_hat) const;
  // -sum log2(f_k / 2^p) of the symbols under the tables, in bits.
  double IdealBits(absl::Span<const int32_t> symbols) const;

  absl::StatusOr<std::vector<uint8_t>> Encode(const Tensor& pixels) const;
  struct Decoded {
    std::vector<int32_t> symbols;
    Tensor z_hat;   // [N, D]
    Tensor pixels;  // x_hat [N, C, H, W], continuous, in [0, L - 1]
  };
  absl::StatusOr<Decoded> Decode(absl::Span<const uint8_t> bytes) const;

 private:
  LossyCodec(LossyModel model, double delta, std::vector<double> steps,
             std::vector<FrequencyTable> t, std::vector<int64_t> first,
             uint64_t fingerprint)
      : model_(std::move(model)),
        delta_(delta),
        steps_(std::move(steps)),
        tables_(std::move(t)),
        first_(std::move(first)),
        fingerprint_(fingerprint) {}

  LossyModel model_;
  double delta_;
  std::vector<double> steps_;           // Delta_d
  std::vector<FrequencyTable> tables_;  // one per latent dimension
  std::vector<int64_t> first_;          // c_d - h_d: symbol 0's multiple
  uint64_t fingerprint_;
};

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_LOSSY_H_
