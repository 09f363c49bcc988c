// Coding one symbol under a FrequencyTable with the rANS coder: the glue an
// image codec calls once per pixel with that pixel's table.
//
//   EncodeSymbol(enc, table, s): enc.Put(start_s, f_s, p). InvalidArgument if
//     s is outside 0..K-1 or f_s = 0 (a symbol the table cannot code).
//   DecodeSymbol(dec, table): v = dec.Peek(p), s =
//   table.SymbolForCumulative(v),
//     dec.Advance(start_s, f_s, p); returns s, or the decoder's error
//     (DataLoss for truncated/corrupt streams).
// Symbols come back in the order they were encoded (rans.h).
#ifndef FLOWTAPE_COMPRESSION_SYMBOL_CODING_H_
#define FLOWTAPE_COMPRESSION_SYMBOL_CODING_H_

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compression/frequencies.h"
#include "compression/rans.h"

namespace flowtape::compression {

namespace internal {
absl::Status BadSymbol(const FrequencyTable& table, int symbol);
}  // namespace internal

inline absl::Status EncodeSymbol(RansEncoder& encoder,
                                 const FrequencyTable& table, int symbol) {
  if (ABSL_PREDICT_FALSE(symbol < 0 || symbol >= table.num_symbols() ||
                         table.freq(symbol) == 0)) {
    return internal::BadSymbol(table, symbol);
  }
  return encoder.Put(table.start(symbol), table.freq(symbol),
                     table.precision_bits());
}

inline absl::StatusOr<int> DecodeSymbol(RansDecoder& decoder,
                                        const FrequencyTable& table) {
  const int p = table.precision_bits();
  const int s = table.SymbolForCumulative(decoder.Peek(p));
  if (ABSL_PREDICT_FALSE(!decoder.status().ok())) return decoder.status();
  // s >= 0: Peek is below 2^p and the table covers [0, 2^p).
  if (absl::Status st = decoder.Advance(table.start(s), table.freq(s), p);
      ABSL_PREDICT_FALSE(!st.ok())) {
    return st;
  }
  return s;
}

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_SYMBOL_CODING_H_
