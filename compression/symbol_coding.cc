#include "compression/symbol_coding.h"

#include "absl/strings/str_cat.h"

namespace flowtape::compression::internal {

absl::Status BadSymbol(const FrequencyTable& table, int symbol) {
  if (symbol < 0 || symbol >= table.num_symbols()) {
    return absl::InvalidArgumentError(absl::StrCat("EncodeSymbol: symbol ",
                                                   symbol, " outside 0..",
                                                   table.num_symbols() - 1));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "EncodeSymbol: symbol ", symbol, " has frequency 0 in its table"));
}

}  // namespace flowtape::compression::internal
