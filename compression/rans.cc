#include "compression/rans.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flowtape::compression {
namespace {

constexpr uint64_t kL = kRansLowerBound;

void PutU32(uint32_t w, uint8_t* out) {
  for (int k = 0; k < 4; ++k) out[k] = static_cast<uint8_t>(w >> (8 * k));
}

uint32_t GetU32(const uint8_t* in) {
  uint32_t w = 0;
  for (int k = 0; k < 4; ++k) w |= uint32_t{in[k]} << (8 * k);
  return w;
}

}  // namespace

namespace internal {
absl::Status SymbolError(uint32_t start, uint32_t freq, int precision_bits) {
  if (precision_bits < 1 || precision_bits > kRansMaxPrecisionBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("rANS: precision_bits ", precision_bits, " outside 1..",
                     kRansMaxPrecisionBits));
  }
  if (freq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rANS: symbol at start ", start,
                     " has frequency 0 (it can never be coded)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("rANS: symbol [", start, ", ", uint64_t{start} + freq,
                   ") exceeds the total 2^", precision_bits));
}
}  // namespace internal

std::vector<uint8_t> RansEncoder::Finish() {
  std::vector<uint32_t> words;  // in emission order
  words.reserve(queue_.size() / 2 + 1);
  uint64_t x = kL;
  for (size_t k = queue_.size(); k-- > 0;) {
    const Symbol& s = queue_[k];
    const int p = s.precision_bits;
    const uint64_t x_max = ((kL >> p) << 32) * s.freq;
    if (x >= x_max) {
      words.push_back(static_cast<uint32_t>(x));
      x >>= 32;
    }
    x = ((x / s.freq) << p) + (x % s.freq) + s.start;
  }
  queue_.clear();

  std::vector<uint8_t> out(8 + 4 * words.size());
  PutU32(static_cast<uint32_t>(x), out.data());
  PutU32(static_cast<uint32_t>(x >> 32), out.data() + 4);
  uint8_t* w = out.data() + 8;
  for (size_t k = words.size(); k-- > 0; w += 4) PutU32(words[k], w);
  return out;
}

absl::StatusOr<RansDecoder> RansDecoder::Create(
    absl::Span<const uint8_t> stream) {
  if (stream.size() < 8 || stream.size() % 4 != 0) {
    return absl::DataLossError(absl::StrCat(
        "rANS: stream of ", stream.size(),
        " bytes is not a flush (8 bytes) plus whole 32-bit words"));
  }
  const uint64_t x = uint64_t{GetU32(stream.data())} |
                     (uint64_t{GetU32(stream.data() + 4)} << 32);
  if (x < kL || (x >> 32) >= kL) {
    return absl::DataLossError(
        absl::StrCat("rANS: initial state ", x, " outside [2^31, 2^63)"));
  }
  return RansDecoder(stream, x, 8);
}

absl::Status RansDecoder::Fail(absl::Status s) {
  status_ = std::move(s);
  return status_;
}

absl::Status RansDecoder::FailSlot(uint32_t start, uint32_t freq,
                                   uint64_t slot) {
  return Fail(absl::InvalidArgumentError(
      absl::StrCat("rANS: symbol [", start, ", ", uint64_t{start} + freq,
                   ") does not contain the decoded slot ", slot,
                   " (table differs from the encoder's)")));
}

absl::Status RansDecoder::FailTruncated() {
  return Fail(absl::DataLossError(
      absl::StrCat("rANS: stream truncated or corrupt (needs a word at byte ",
                   pos_, " of ", stream_.size(), ")")));
}

absl::Status RansDecoder::Finish() const {
  if (!status_.ok()) return status_;
  if (pos_ != stream_.size()) {
    return absl::DataLossError(
        absl::StrCat("rANS: ", stream_.size() - pos_,
                     " bytes left after the last symbol (corrupt stream or "
                     "too few symbols decoded)"));
  }
  if (state_ != kL) {
    return absl::DataLossError(absl::StrCat("rANS: final state ", state_,
                                            " != 2^31 (corrupt stream or wrong "
                                            "symbol count)"));
  }
  return absl::OkStatus();
}

}  // namespace flowtape::compression
