// Multi-scale integer discrete flow (IDF, Hoogeboom et al. 2019): a
// bijection of Z^D made of squeezes and additive couplings with rounded
// translations, with factor-out: after every level but the last, half of the
// channels leave the flow and are coded under a discretised logistic mixture
// whose parameters a network computes from the channels that stay. The last
// level's latents have a learned per-dimension prior. Training minimises the
// exact discrete NLL; idf_codec.h codes the latents with rANS.
//
// Data: images 1 x H x W of integer pixels (0..255 for coding; the map is
// defined on all of Z^D), D = H W. Tensors are [C, h, w] per image,
// flattened channel-major (the layout of Conv2d).
//
// Forward x -> z (data to latents), h_0 = x (1 x H x W), level l = 0..L-1:
//   squeeze (if the level has one): [C, h, w] -> [4C, h/2, w/2],
//     y[4c + 2i + j, r, s] = v[c, 2r + i, 2s + j]      (flows/squeeze.h)
//   couplings k = 0..K_l-1 on the C channels, c2 = floor(C / 2):
//     k even: a = channels [0, c2), b = [c2, C); k odd: a = [c2, C), b =
//     [0, c2);  u = (v_a - 128) / 128 (exact: a power of two),
//     v_b += clamp(round(NN_lk(u)), -kIdfMaxShift, kIdfMaxShift)
//   factor-out (l < L-1): z_l = channels [c2, C) (leave the flow), the
//     channels [0, c2) are the next level's input h_{l+1}.
// The last level's channels are z_{L-1}. round is std::round (halves away
// from zero); the inverse subtracts the same translations in reverse order,
// exact on integers (|values| <= 255 + 64 kIdfMaxShift). The map is volume
// preserving on Z^D: P(x) = prod_l P(z_l | h_{l+1}) P(z_{L-1}).
// NN is a ReLU convnet of 3 x 3 "same" convolutions (nn/conv.h) with the
// `hidden` channel counts; the last convolution of every coupling starts at
// zero (f starts as the identity).
//
// Latent order (the codec's, and Forward's columns): z_{L-1}, z_{L-2}, ...,
// z_0, each [C, h, w] flattened. Decoding reads z_{L-1}, inverts level L-1
// to get h_{L-1}'s kept channels, computes the prior of z_{L-2} from them,
// reads z_{L-2}, and so on down to level 0 and x.
//
// Conditional prior of z_l (l < L-1): the prior net NN'_l (same shape of
// convnet) maps u = (h_{l+1} - 128) / 128 to 3 F K channels (F = C - c2
// factored channels, K components); at each pixel (r, s), factored channel
// f and component c read output channels (p F + f) K + c for p = 0 (logit
// l), 1 (m) and 2 (g). The last convolution starts with zero weights and
// biases l = 0, m = mu0_c, g = log(8), mu0_c = c 255 / (K - 1)
// (127.5 for K = 1), which breaks the symmetry between components; here
// mu_c = m_c and s_c = exp(g_c) (pixel units: Adam moves each of a
// convolution's many weights by ~lr, so the net's outputs need no scaling).
// Final prior (z_{L-1}): per dimension d parameters l_dc, m_dc, g_dc with
// mu_c = 32 m_c, s_c = exp(4 g_c) (kIdfMeanUnit, kIdfLogScaleUnit: powers of
// two, exact; they give Adam's steps on these single parameters a useful
// size) and the same initial mu, s. In both, w_c = softmax_c(l), over all
// integers z:
//   P(z) = sum_c w_c [sigma((z + 1/2 - mu_c) / s_c)
//                     - sigma((z - 1/2 - mu_c) / s_c)]
// each bin without cancellation as
//   log(sigma(b) - sigma(a))
//     = logsigmoid(b) + logsigmoid(-a) + log(1 - e^-(b-a)).
// NLL: -log P(x) = -sum over latents of log P(z) nats; bits/dim = that /
// (D ln 2).
//
// Gradient: round has the straight-through estimator d round(t)/dt := 1
// (RoundStraightThrough); clamp passes the gradient inside its range and 0
// outside. The prior's parameters (final prior, prior nets) do not move the
// latents, so their gradient is exact.
//
// Model file: a checkpoint (nn/checkpoint.h) of the parameters whose
// metadata "idf2" holds the options as JSON ({"height", "width", "levels":
// [{"squeeze": bool, "couplings": int}, ...], "hidden": [...],
// "components"}): LoadIdf needs nothing but the file. Errors name the file
// (checkpoint reader's; a file with the single-scale description of format 1
// (metadata "idf") is refused as "single-scale IDF model (format 1) is no
// longer supported"; "no IDF description"; an invalid option; mismatched
// tensors).
#ifndef FLOWTAPE_COMPRESSION_IDF_H_
#define FLOWTAPE_COMPRESSION_IDF_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "io/json.h"
#include "nn/conv.h"
#include "nn/module.h"

namespace flowtape::compression {

inline constexpr double kIdfMaxShift = 4096.0;
inline constexpr double kIdfInputCenter = 128.0;
inline constexpr double kIdfInputScale = 1.0 / 128.0;
inline constexpr double kIdfMeanUnit = 32.0;
inline constexpr double kIdfLogScaleUnit = 4.0;
// Units of the prior nets' outputs (mu = m, s = exp(g)).
inline constexpr double kIdfNetMeanUnit = 1.0;
inline constexpr double kIdfNetLogScaleUnit = 1.0;
inline constexpr int kIdfKernel = 3;

// y = round(x) (halves away from zero); dy/dx := 1 (straight-through).
Tensor RoundStraightThrough(const Tensor& x);

struct IdfLevel {
  bool squeeze = true;
  int couplings = 2;
};

// The shape [channels, height, width] of a level's tensor after its squeeze.
struct IdfShape {
  int64_t c = 0, h = 0, w = 0;
  int64_t size() const { return c * h * w; }
  int64_t kept() const { return c / 2; }          // channels staying
  int64_t factored() const { return c - c / 2; }  // channels leaving
};

struct IdfOptions {
  int64_t height = 28;
  int64_t width = 28;
  // 28 x 28: 4 x 14 x 14 (factor 2), 8 x 7 x 7 (factor 4), 4 x 7 x 7
  // (factor 2), 2 x 7 x 7 (factor 1), final 1 x 7 x 7.
  std::vector<IdfLevel> levels = {
      {true, 2}, {true, 2}, {false, 2}, {false, 2}, {false, 0}};
  std::vector<int64_t> hidden = {32, 32};
  int components = 4;

  // InvalidArgument naming the field: height, width 1..256 with D >= 2;
  // 1..8 levels, each squeeze on even sizes, 0..16 couplings, at least 2
  // channels where a level couples or factors out; 1..4 hidden layers of
  // 1..512 channels; components 1..16.
  absl::Status Validate() const;
  io::Json ToJson() const;
  // Every field required, integers and booleans only; then Validate().
  static absl::StatusOr<IdfOptions> FromJson(const io::Json& j);
  int64_t dims() const { return height * width; }
  // Level l's shape after its squeeze (valid options).
  IdfShape LevelShape(int l) const;
  // Parameters of the model these options build.
  int64_t NumParameters() const;
};

// A ReLU convnet of 3 x 3 "same" convolutions in -> hidden... -> out.
// Create: InvalidArgument unless in, out and every hidden width are >= 1.
class IdfConvNet : public nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<IdfConvNet>> Create(
      int64_t in, const std::vector<int64_t>& hidden, int64_t out, Rng& rng);
  Tensor operator()(const Tensor& x) const;  // [N, in, h, w] -> [N, out, ..]
  const std::vector<std::shared_ptr<nn::Conv2d>>& layers() const {
    return layers_;
  }

 private:
  IdfConvNet(int64_t in, const std::vector<int64_t>& hidden, int64_t out,
             Rng& rng);
  std::vector<std::shared_ptr<nn::Conv2d>> layers_;
};

class IntegerDiscreteFlow : public nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> Create(
      const IdfOptions& options, Rng& rng);

  const IdfOptions& options() const { return options_; }
  // x [N, D] or [N, 1, H, W] (integer values) -> z [N, D] in latent order;
  // differentiable in the parameters through the straight-through rounding.
  Tensor Forward(const Tensor& x) const;
  // z [N, D] (latent order) -> x [N, D].
  Tensor Inverse(const Tensor& z) const;
  // log P(x) [N] in nats.
  Tensor LogProb(const Tensor& x) const;
  // Mean NLL in nats (a training::NllFn).
  Tensor Nll(const Tensor& x) const;

  // log P(z) [N, F, h, w] under the conditional prior of level l < L-1,
  // z [N, F, h, w] the factored channels, kept [N, c2, h, w] the channels
  // staying (both integer-valued).
  Tensor ConditionalLogProb(int l, const Tensor& z, const Tensor& kept) const;
  // log P(z) [N, D_last] under the final prior, z [N, D_last].
  Tensor FinalLogProb(const Tensor& z) const;

  const IdfConvNet& coupling(int l, int k) const { return *couplings_[l][k]; }
  const IdfConvNet& prior_net(int l) const { return *prior_nets_[l]; }
  // Final prior parameters [D_last, K]: l, m = mu / 32, g = log(s) / 4.
  const Tensor& prior_logits() const { return logits_; }
  const Tensor& prior_means() const { return means_; }
  const Tensor& prior_log_scales() const { return log_scales_; }

 private:
  explicit IntegerDiscreteFlow(const IdfOptions& options, Rng& rng);
  // Level l's couplings on v [N, C, h, w] (sign +1 forward, -1 inverse).
  Tensor Couple(int l, const Tensor& v, double sign) const;
  // Forward to the latents (latent order), adding log P(x) to *log_p when
  // log_p is not null.
  Tensor Run(const Tensor& x, Tensor* log_p) const;

  IdfOptions options_;
  std::vector<std::vector<std::shared_ptr<IdfConvNet>>> couplings_;
  std::vector<std::shared_ptr<IdfConvNet>> prior_nets_;  // levels 0..L-2
  Tensor logits_, means_, log_scales_;
};

// Squeeze index: squeezed[q] = v[index[q]] for v [c, h, w] flattened.
std::vector<int64_t> IdfSqueezeIndex(int64_t c, int64_t h, int64_t w);

// Mean NLL of x in bits per dimension (no recording).
double IdfBitsPerDim(const IntegerDiscreteFlow& flow, const Tensor& x,
                     int64_t batch_size = 500);

absl::Status SaveIdf(const std::string& path, const IntegerDiscreteFlow& flow);
absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> LoadIdf(
    const std::string& path);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_IDF_H_
