// Integer discrete flow (IDF, Hoogeboom et al. 2019): a bijection of Z^D made
// of additive couplings with rounded translations, and a discretised
// logistic mixture prior per latent dimension. Training minimises the exact
// discrete NLL; idf_codec.h codes the latents with rANS.
//
// Data: images 1 x H x W of integer pixels (0..255 for coding; the map is
// defined on all of Z^D), flattened row-major to x in Z^D, D = H W.
//
// Forward x -> z (data to latent), couplings k = 0..L-1 in order:
//   a_k = the pixels (i, j) with (i + j) % 2 == k % 2 (checkerboard; the
//         conditioning half), b_k = the others;
//   u   = (x_a - 128) / 128                      (exact: a power of two)
//   t   = MLP_k(u)    Linear -> ReLU -> ... -> Linear, |a| -> hidden -> |b|
//   z_b = x_b + clamp(round(t), -kIdfMaxShift, kIdfMaxShift),  z_a = x_a.
// round is std::round (halves away from zero). Inverse, k = L-1..0:
//   x_b = z_b - clamp(round(MLP_k((z_a - 128) / 128)), ...),   x_a = z_a,
// exact on integers (float64 holds them exactly; |z| <= 255 + L 4096). The
// map is volume preserving on Z^D: P(x) = P_Z(f(x)), no log-determinant.
// The last layer of every MLP starts at zero (f starts as the identity).
//
// Gradient: round has the straight-through estimator d round(t)/dt := 1
// (RoundStraightThrough); clamp passes the gradient inside its range and 0
// outside.
//
// Prior (learned per dimension, not conditional): for latent dimension d,
// components c = 1..K with parameters l_dc (logits), m_dc, g_dc,
// w_dc = softmax_c(l_d), mu_dc = 32 m_dc, s_dc = exp(4 g_dc) (the factors
// kIdfMeanUnit, kIdfLogScaleUnit give Adam's steps a useful size in pixel
// units; both are powers of two, so exact), over all integers z:
//   P_d(z) = sum_c w_dc [sigma((z + 1/2 - mu_dc)/s_dc)
//                        - sigma((z - 1/2 - mu_dc)/s_dc)].
// Each bin is computed without cancellation as
//   log(sigma(b) - sigma(a)) = logsigmoid(b) + logsigmoid(-a) + log(1 -
//   e^-(b-a))
// (b - a = 1/s). Initial means c 255 / (K - 1) (127.5 for K = 1: the
// extremes 0 and 255 are MNIST's commonest pixels), scales 8, equal weights.
// NLL: -log P(x) = -sum_d log P_d(z_d) nats; bits/dim = that / (D ln 2).
// The coder (idf_codec.h) uses these components in frequencies.h's
// discretised logistic mixture, whose interior bins are the same P_d(z).
//
// Model file: a checkpoint (nn/checkpoint.h) of the parameters whose
// metadata "idf" holds the options as JSON ({"height", "width",
// "couplings", "hidden": [...], "components"}): LoadIdf needs nothing but the
// file. Errors name the file (checkpoint reader's; "model file 'p': no IDF
// description (metadata 'idf')"; an invalid option; mismatched tensors).
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
#include "nn/layers.h"
#include "nn/module.h"

namespace flowtape::compression {

inline constexpr double kIdfMaxShift = 4096.0;
inline constexpr double kIdfInputCenter = 128.0;
inline constexpr double kIdfInputScale = 1.0 / 128.0;
inline constexpr double kIdfMeanUnit = 32.0;
inline constexpr double kIdfLogScaleUnit = 4.0;

// y = round(x) (halves away from zero); dy/dx := 1 (straight-through).
Tensor RoundStraightThrough(const Tensor& x);

struct IdfOptions {
  int64_t height = 28;
  int64_t width = 28;
  int couplings = 8;
  std::vector<int64_t> hidden = {256};
  int components = 3;

  // InvalidArgument naming the field: height, width 1..256 with D >= 2;
  // couplings 1..64; 1..4 hidden layers of 1..4096 units; components 1..16.
  absl::Status Validate() const;
  io::Json ToJson() const;
  // Every field required, integers only; then Validate().
  static absl::StatusOr<IdfOptions> FromJson(const io::Json& j);
  int64_t dims() const { return height * width; }
  // Parameters of the model these options build.
  int64_t NumParameters() const;
};

class IntegerDiscreteFlow : public nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> Create(
      const IdfOptions& options, Rng& rng);

  const IdfOptions& options() const { return options_; }
  // x [N, D] or [N, 1, H, W] (integer values) -> z [N, D]; differentiable in
  // the parameters through the straight-through rounding.
  Tensor Forward(const Tensor& x) const;
  // z [N, D] -> x [N, D].
  Tensor Inverse(const Tensor& z) const;
  // log P_Z(z) [N] in nats.
  Tensor LatentLogProb(const Tensor& z) const;
  // log P(x) [N] in nats.
  Tensor LogProb(const Tensor& x) const { return LatentLogProb(Forward(x)); }
  // Mean NLL in nats (a training::NllFn).
  Tensor Nll(const Tensor& x) const;

  // The checkerboard halves of coupling k (ascending indices).
  const std::vector<int64_t>& conditioning(int k) const {
    return split_[k % 2][0];
  }
  const std::vector<int64_t>& updated(int k) const { return split_[k % 2][1]; }
  const nn::MLP& net(int k) const { return *nets_[k]; }
  // Prior parameters [D, K]: l, m = mu / 32, g = log(s) / 4.
  const Tensor& prior_logits() const { return logits_; }
  const Tensor& prior_means() const { return means_; }
  const Tensor& prior_log_scales() const { return log_scales_; }

 private:
  explicit IntegerDiscreteFlow(const IdfOptions& options, Rng& rng);
  Tensor Couple(const Tensor& x, int k, double sign) const;

  IdfOptions options_;
  // split_[p] = {pixels with parity p, the others}, each ascending.
  std::vector<std::vector<int64_t>> split_[2];
  std::vector<int64_t> unsplit_[2];  // the inverse permutation of a ++ b
  std::vector<std::shared_ptr<nn::MLP>> nets_;
  Tensor logits_, means_, log_scales_;
};

// Mean NLL of x in bits per dimension (no recording).
double IdfBitsPerDim(const IntegerDiscreteFlow& flow, const Tensor& x,
                     int64_t batch_size = 500);

absl::Status SaveIdf(const std::string& path, const IntegerDiscreteFlow& flow);
absl::StatusOr<std::shared_ptr<IntegerDiscreteFlow>> LoadIdf(
    const std::string& path);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_IDF_H_
