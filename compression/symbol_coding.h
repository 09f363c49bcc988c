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

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compression/frequencies.h"
#include "compression/rans.h"

namespace flowtape::compression {

absl::Status EncodeSymbol(RansEncoder& encoder, const FrequencyTable& table,
                          int symbol);

absl::StatusOr<int> DecodeSymbol(RansDecoder& decoder,
                                 const FrequencyTable& table);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_SYMBOL_CODING_H_
