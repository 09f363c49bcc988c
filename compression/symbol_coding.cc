#include "compression/symbol_coding.h"

#include "absl/strings/str_cat.h"

namespace flowtape::compression {

absl::Status EncodeSymbol(RansEncoder& encoder, const FrequencyTable& table,
                          int symbol) {
  if (symbol < 0 || symbol >= table.num_symbols()) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeSymbol: symbol ",
                                                   symbol, " outside 0..",
                                                   table.num_symbols() - 1));
  }
  if (table.freq(symbol) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "EncodeSymbol: symbol ", symbol, " has frequency 0 in its table"));
  }
  return encoder.Put(table.start(symbol), table.freq(symbol),
                     table.precision_bits());
}

absl::StatusOr<int> DecodeSymbol(RansDecoder& decoder,
                                 const FrequencyTable& table) {
  const int p = table.precision_bits();
  const int s = table.SymbolForCumulative(decoder.Peek(p));
  if (!decoder.status().ok()) return decoder.status();
  // s >= 0: Peek is below 2^p and the table covers [0, 2^p).
  if (absl::Status st = decoder.Advance(table.start(s), table.freq(s), p);
      !st.ok()) {
    return st;
  }
  return s;
}

}  // namespace flowtape::compression
