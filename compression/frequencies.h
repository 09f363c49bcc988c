// Integer frequency tables for entropy coding (rans.h): quantising a
// distribution over symbols 0..K-1 to frequencies f_s summing to M = 2^p,
// discretised logistics (and mixtures) as used by PixelCNN++ and integer
// discrete flows (IDF), and the decoder's symbol lookup.
//
// Quantisation. Given masses q_s >= 0 (total Q > 0; normalised here), the
// table maximises the expected log-likelihood under the quantised model,
//   maximise sum_s q_s log f_s  subject to  sum_s f_s = M,
//   f_s >= 1 where q_s > 0,  f_s = 0 where q_s = 0,
// i.e. minimises the expected code length -sum (q_s/Q) log2(f_s/M) (the
// entropy of q/Q plus KL(q/Q || f/M)). Method: f_s = max(1, round(q_s M / Q)),
// then unit moves until sum f = M, each the cheapest (a max-heap of gains
// q_s log(1 + 1/f_s), a min-heap of losses q_s log(1 + 1/(f_s - 1))), then
// unit exchanges from the smallest loss to the largest gain while the gain is
// larger. The objective is separable and concave, so a table no exchange
// improves is optimal (up to rounding in the computed gains); the exchange
// phase is capped at 4 K + 64 moves (never reached in the tests) and the table
// is valid either way. Ties are broken by symbol index.
//
// A symbol with q_s = 0 gets f_s = 0 and can never be coded: the caller
// promises never to encode it (RansEncoder::Put rejects freq 0). The
// logistic tables below give every symbol f_s >= 1, since every bin of a
// logistic has positive probability even when it underflows to 0 in float64.
// Errors (InvalidArgument): precision outside 1..31, K = 0, negative or
// non-finite masses, Q = 0 or not finite, more coded symbols than M.
//
// Discretised logistic. Symbol k stands for the value k with bin
// [k - 1/2, k + 1/2]; the edge bins are open (PixelCNN++ / IDF):
//   P(0)     = sigma((0.5 - mu) / s)
//   P(k)     = sigma((k + 0.5 - mu) / s) - sigma((k - 0.5 - mu) / s)
//   P(K - 1) = 1 - sigma((K - 1.5 - mu) / s),     sigma(t) = 1 / (1 + e^-t),
// each difference taken as sigma(-t_lo) - sigma(-t_hi) when t_lo >= 0 (no
// cancellation in the upper tail). mu and s > 0 are in symbol units: for
// PixelCNN++'s (mu', s') on [-1, 1] with 256 levels use mu = 127.5 (mu' + 1),
// s = 127.5 s'. A mixture sum_c w_c Logistic(mu_c, s_c) has the weighted sum
// of the component bin masses (w_c >= 0, normalised by their sum).
//
// Determinism: the masses and tables are computed in float64 with the
// functions of deterministic_math.h and IEEE basic operations only, sums in
// index order, heaps ordered by (value, index), and the target is built with
// -ffp-contract=off. So bit-identical inputs give identical tables on every
// platform covered by deterministic_math.h (any libm, any -march): the
// encoder and the decoder of an IDF model only need bit-identical (mu, s, w).
//
// Lookup. FrequencyTable holds f and the starts c_s = f_0 + ... + f_{s-1};
// SymbolForCumulative(v) is the s with c_s <= v < c_s + f_s (branch-free
// binary search; never a zero-frequency symbol), -1 for v >= M.
#ifndef FLOWTAPE_COMPRESSION_FREQUENCIES_H_
#define FLOWTAPE_COMPRESSION_FREQUENCIES_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace flowtape::compression {

// Frequencies (summing to 2^precision_bits) for the masses `masses`.
absl::StatusOr<std::vector<uint32_t>> QuantizeProbabilities(
    absl::Span<const double> masses, int precision_bits);

// The same from a cumulative function: cdf(k) = P(X <= k) up to a constant
// factor, for k = 0..num_symbols-1 (mass of k: cdf(k) - cdf(k - 1), cdf(-1)
// = 0; cdf(K - 1) is the total). InvalidArgument if cdf decreases, is
// negative or non-finite.
absl::StatusOr<std::vector<uint32_t>> QuantizeCdf(
    const std::function<double(int)>& cdf, int num_symbols, int precision_bits);

struct LogisticComponent {
  double weight = 1.0;
  double mean = 0.0;
  double scale = 1.0;
};

// Bin masses of the discretised logistic (mixture) over 0..num_symbols-1
// (float64, summing to 1 up to rounding; far-tail bins may be 0).
// InvalidArgument: num_symbols < 1, no components, a non-finite mean or
// weight, scale not finite and > 0, negative weight, zero total weight.
absl::StatusOr<std::vector<double>> DiscretizedLogisticMixturePmf(
    absl::Span<const LogisticComponent> components, int num_symbols);

// Fast quantisation with every symbol >= 1 (used per pixel by the IDF
// codec, whose conditional priors change with every latent): with the running
// sums F_s = q_0 + ... + q_{s-1} (index order; non-decreasing in floating
// point since q >= 0) and F_K = Q,
//   C_s = floor((F_s / Q) (M - K)) + s,   f_s = C_{s+1} - C_s >= 1,
// so C_0 = 0, C_K = M and each symbol loses at most (K / M) of its share:
// the expected code length exceeds -sum (q_s/Q) log2(q_s/Q) by at most
// -log2(1 - K / M) bits. Deterministic like the rest of this file.
// InvalidArgument: the errors of QuantizeProbabilities, and K > M.
absl::StatusOr<std::vector<uint32_t>> QuantizeCumulative(
    absl::Span<const double> masses, int precision_bits);

// Frequencies of the discretised logistic (mixture), every symbol >= 1.
// InvalidArgument as above and when num_symbols > 2^precision_bits.
absl::StatusOr<std::vector<uint32_t>> DiscretizedLogisticFrequencies(
    double mean, double scale, int num_symbols, int precision_bits);
absl::StatusOr<std::vector<uint32_t>> DiscretizedLogisticMixtureFrequencies(
    absl::Span<const LogisticComponent> components, int num_symbols,
    int precision_bits);

class FrequencyTable {
 public:
  // InvalidArgument unless 1 <= precision_bits <= 31, freqs non-empty and
  // sum freqs == 2^precision_bits.
  static absl::StatusOr<FrequencyTable> Create(std::vector<uint32_t> freqs,
                                               int precision_bits);

  int num_symbols() const { return static_cast<int>(freqs_.size()); }
  int precision_bits() const { return precision_bits_; }
  uint32_t freq(int symbol) const { return freqs_[symbol]; }
  uint32_t start(int symbol) const { return starts_[symbol]; }

  // The symbol whose interval contains v, or -1 if v >= 2^precision_bits.
  int SymbolForCumulative(uint32_t v) const {
    if (v >= starts_.back()) return -1;
    // The largest s < K with c_s <= v: branch-free binary search over the
    // range [base, base + n) that holds it. A zero-frequency symbol shares
    // its start with the next symbol, so the largest such s has f_s >= 1.
    const uint32_t* base = starts_.data();
    size_t n = freqs_.size();
    while (n > 1) {
      const size_t half = n / 2;
      base = base[half] <= v ? base + half : base;
      n -= half;
    }
    return static_cast<int>(base - starts_.data());
  }

 private:
  FrequencyTable(std::vector<uint32_t> freqs, std::vector<uint32_t> starts,
                 int precision_bits)
      : freqs_(std::move(freqs)),
        starts_(std::move(starts)),
        precision_bits_(precision_bits) {}

  std::vector<uint32_t> freqs_;
  std::vector<uint32_t> starts_;  // size K + 1; starts_[K] = 2^p
  int precision_bits_;
};

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_FREQUENCIES_H_
