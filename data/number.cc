#include "data/number.h"

#include <cfloat>
#include <charconv>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace flowtape::data {
namespace {

// The text for a message: escaped, at most 40 characters of it.
std::string Quote(absl::string_view text) {
  if (text.size() <= 40) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, 40)), "...");
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Index just past a run of digits starting at i.
size_t Digits(absl::string_view s, size_t i) {
  while (i < s.size() && IsDigit(s[i])) ++i;
  return i;
}

bool IsNonFiniteWord(absl::string_view text) {
  if (!text.empty() && (text[0] == '+' || text[0] == '-'))
    text.remove_prefix(1);
  const std::string lower = absl::AsciiStrToLower(text);
  return lower == "inf" || lower == "infinity" || lower == "nan";
}

}  // namespace

bool IsDecimalSyntax(absl::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const size_t int_begin = i;
  i = Digits(s, i);
  bool mantissa_digits = i > int_begin;
  if (i < s.size() && s[i] == '.') {
    const size_t frac_begin = ++i;
    i = Digits(s, i);
    mantissa_digits = mantissa_digits || i > frac_begin;
  }
  if (!mantissa_digits) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t exp_begin = i;
    i = Digits(s, i);
    if (i == exp_begin) return false;
  }
  return i == s.size();
}

absl::Status ParseDecimal(absl::string_view text, double* value) {
  if (text.empty())
    return absl::InvalidArgumentError("cannot parse '' (empty field)");
  if (IsNonFiniteWord(text))
    return absl::InvalidArgumentError(
        absl::StrCat("non-finite value '", Quote(text),
                     "' (only finite decimal numbers are accepted)"));
  if (!IsDecimalSyntax(text))
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot parse '", Quote(text),
        "' as a decimal number (digits, optional sign, point and exponent)"));
  // from_chars takes no leading '+'.
  absl::string_view body = text[0] == '+' ? text.substr(1) : text;
  // Whether any mantissa digit is nonzero (then the value must not be 0).
  bool nonzero = false;
  for (char c : body) {
    if (c == 'e' || c == 'E') break;
    if (c >= '1' && c <= '9') nonzero = true;
  }
  double v = 0.0;
  const auto r = std::from_chars(body.data(), body.data() + body.size(), v,
                                 std::chars_format::general);
  // The exponent's sign tells overflow from underflow when from_chars
  // reports the value out of range.
  const size_t e = body.find_first_of("eE");
  const bool negative_exponent =
      e != absl::string_view::npos && e + 1 < body.size() && body[e + 1] == '-';
  if (r.ec == std::errc::result_out_of_range) {
    if (negative_exponent)
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "' underflows: nonzero but below the ",
                       "smallest normal double (", DBL_MIN, ")"));
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' overflows: above the largest double (", DBL_MAX, ")"));
  }
  if (r.ec != std::errc() || r.ptr != body.data() + body.size())
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse '", Quote(text), "' as a decimal number"));
  if (std::isinf(v))
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' overflows: above the largest double (", DBL_MAX, ")"));
  if ((v == 0.0 && nonzero) || std::fpclassify(v) == FP_SUBNORMAL)
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' underflows: nonzero but below the ",
                     "smallest normal double (", DBL_MIN, ")"));
  *value = v;
  return absl::OkStatus();
}

}  // namespace flowtape::data
