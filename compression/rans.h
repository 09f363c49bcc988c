// rANS: range asymmetric numeral systems (Duda 2013), the 64-bit-state,
// 32-bit-renormalising variant (as in ryg_rans's rans64), with a distribution
// per symbol: every symbol is coded with its own (start, freq, precision).
//
// A symbol s of a distribution quantised to M = 2^p (p = precision_bits, 1..31)
// is the interval [start, start + freq) of [0, M), freq >= 1 (its probability
// is freq / M; frequencies.h builds such tables). State x, a uint64 in
//   I = [L, 2^32 L),  L = 2^31.
// Encode s (x -> x'):
//   renormalise: if x >= x_max(f) = ((L >> p) << 32) f: emit the low 32
//                bits of x, x >>= 32   (once suffices: x < 2^63 <= 2^32 x_max)
//   x' = floor(x / f) M + (x mod f) + start
// Decode (x' -> s, x), the exact inverse:
//   slot = x' mod M  (Peek);  s = the symbol with start <= slot < start + f
//   x = f floor(x' / M) + slot - start;   (Advance)
//   renormalise: if x < L: x = (x << 32) | next 32-bit word
// Both keep x in I. Start: x = L. Flush: the final encoder state, 8 bytes.
//
// Order: rANS is last-in first-out. RansEncoder queues the symbols and
// encodes them from last to first in Finish(), so the decoder returns them in
// the order they were Put: encode s_1..s_n with Put(s_1)..Put(s_n), decode
// with n Peek/Advance pairs giving s_1..s_n. The queue costs 12 bytes per
// symbol until Finish().
//
// Stream format (bytes, all integers little-endian):
//   [final state x: uint64][w_1][w_2]...[w_W]   (w_k: uint32, in the order
//   the decoder reads them, i.e. the reverse of emission)
// so its length is 8 + 4 W, W = number of renormalisations.
//
// Code length: for symbols with frequencies f_k under precisions p_k,
// ideal = sum_k -log2(f_k / 2^p_k) bits, the stream length B in bytes obeys
//   8 B <= ideal + 64 + sum_k log2(1 + 2^(p_k - 31))
//   8 B >= ideal + 32 + 2 sum_k log2(1 - 2^(p_k - 31))       (p_k <= 30)
// (Phi = log2 x + 32 W grows by at most log2(M/f) + log2(1 + f/x) per symbol,
// with f / x <= 2^(p - 31), and never grows when renormalising; the final x is
// in I.) So at p = 16 the overhead is 4 to 8 bytes of flush plus at most
// 4.4e-5 bits per symbol.
//
// Errors. The decoder never reads outside its span, never aborts and does
// constant work per call. Create() fails (DataLoss) on a stream shorter than
// 8 bytes, of a length not 8 + 4 W, or with an initial state outside I.
// Advance() fails (DataLoss) when it needs a word past the end (truncated or
// corrupt stream) and (InvalidArgument) on bad arguments: precision outside
// 1..31, freq = 0, start + freq > 2^p, or [start, start + freq) not containing
// the peeked slot (a different table from the encoder's). Errors are sticky:
// after one, Peek returns 0 and Advance/Finish return the first error.
// Finish() checks that every byte was consumed and that the state is back at
// L. If it returns OK, re-encoding the decoded symbols reproduces the stream
// exactly (each decode step is the inverse of an encode step on I), so a
// stream that differs from the encoder's output never decodes silently to the
// original symbols: it fails Finish() unless it is itself the exact encoding
// of some other symbol sequence of that length (for corrupted streams, the
// final state must hit L exactly with every byte consumed, roughly a 2^-32
// chance, not a guarantee; add a checksum when that matters).
#ifndef FLOWTAPE_COMPRESSION_RANS_H_
#define FLOWTAPE_COMPRESSION_RANS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace flowtape::compression {

inline constexpr int kRansMaxPrecisionBits = 31;
inline constexpr uint64_t kRansLowerBound = uint64_t{1} << 31;  // L

namespace internal {
inline bool ValidSymbol(uint32_t start, uint32_t freq, int precision_bits) {
  return precision_bits >= 1 && precision_bits <= kRansMaxPrecisionBits &&
         freq != 0 && uint64_t{start} + freq <= (uint64_t{1} << precision_bits);
}
// InvalidArgument naming what is wrong with (start, freq, precision_bits).
absl::Status SymbolError(uint32_t start, uint32_t freq, int precision_bits);
}  // namespace internal

class RansEncoder {
 public:
  // Queues one symbol. InvalidArgument (nothing queued) unless
  // 1 <= precision_bits <= 31, freq >= 1 and start + freq <= 2^precision_bits.
  absl::Status Put(uint32_t start, uint32_t freq, int precision_bits) {
    if (ABSL_PREDICT_FALSE(
            !internal::ValidSymbol(start, freq, precision_bits))) {
      return internal::SymbolError(start, freq, precision_bits);
    }
    queue_.push_back({start, freq, static_cast<uint8_t>(precision_bits)});
    return absl::OkStatus();
  }

  // Encodes the queued symbols and returns the stream; the encoder is then
  // empty and can be reused.
  std::vector<uint8_t> Finish();

  size_t num_symbols() const { return queue_.size(); }

 private:
  struct Symbol {
    uint32_t start;
    uint32_t freq;
    uint8_t precision_bits;
  };
  std::vector<Symbol> queue_;
};

class RansDecoder {
 public:
  // The decoder reads from `stream`, which must outlive it.
  static absl::StatusOr<RansDecoder> Create(absl::Span<const uint8_t> stream);

  // The slot x mod 2^precision_bits of the next symbol; look its symbol up
  // (FrequencyTable::SymbolForCumulative) and call Advance with that
  // symbol's start and freq. Returns 0 after an error or for a precision
  // outside 1..31 (the following Advance then fails).
  uint32_t Peek(int precision_bits) const {
    if (ABSL_PREDICT_FALSE(!status_.ok() || precision_bits < 1 ||
                           precision_bits > kRansMaxPrecisionBits)) {
      return 0;
    }
    return static_cast<uint32_t>(state_ &
                                 ((uint64_t{1} << precision_bits) - 1));
  }

  // Consumes the symbol [start, start + freq) at this precision.
  absl::Status Advance(uint32_t start, uint32_t freq, int precision_bits) {
    if (ABSL_PREDICT_FALSE(!status_.ok())) return status_;
    if (ABSL_PREDICT_FALSE(
            !internal::ValidSymbol(start, freq, precision_bits))) {
      return Fail(internal::SymbolError(start, freq, precision_bits));
    }
    const uint64_t slot = state_ & ((uint64_t{1} << precision_bits) - 1);
    if (ABSL_PREDICT_FALSE(slot < start || slot - start >= freq)) {
      return FailSlot(start, freq, slot);
    }
    uint64_t x = freq * (state_ >> precision_bits) + (slot - start);
    if (x < kRansLowerBound) {
      if (ABSL_PREDICT_FALSE(stream_.size() - pos_ < 4)) {
        return FailTruncated();
      }
      const uint8_t* w = stream_.data() + pos_;
      x = (x << 32) | uint32_t{w[0]} | (uint32_t{w[1]} << 8) |
          (uint32_t{w[2]} << 16) | (uint32_t{w[3]} << 24);
      pos_ += 4;
    }
    state_ = x;
    return absl::OkStatus();
  }

  // OK iff no error occurred, every byte was consumed and the state is L:
  // call after the last symbol.
  absl::Status Finish() const;

  // The first error so far (sticky), or OK.
  const absl::Status& status() const { return status_; }

  size_t bytes_remaining() const { return stream_.size() - pos_; }

 private:
  RansDecoder(absl::Span<const uint8_t> stream, uint64_t state, size_t pos)
      : stream_(stream), state_(state), pos_(pos) {}
  // Error paths, out of line; each records the sticky status and returns it.
  absl::Status Fail(absl::Status s);
  absl::Status FailSlot(uint32_t start, uint32_t freq, uint64_t slot);
  absl::Status FailTruncated();

  absl::Span<const uint8_t> stream_;
  uint64_t state_;
  size_t pos_;
  absl::Status status_;
};

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_RANS_H_
