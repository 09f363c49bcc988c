// exp, log and friends computed with IEEE-754 basic operations only, so that
// encoder and decoder derive bit-identical probability tables on any
// machine.
//
// libm's exp/log may differ in the last bit between library versions, CPUs
// (different code paths per ISA) and compilers; an entropy decoder that
// rebuilds a table one unit different from the encoder's decodes garbage.
// These functions use only +, -, *, / (correctly rounded by IEEE-754),
// std::floor, std::frexp, multiplication by exact powers of two and
// std::ldexp (exact, or one IEEE rounding for subnormal results), fixed
// polynomial evaluation orders, and constants written as exactly representable
// hex/decimal literals. The library target is compiled with -ffp-contract=off
// so no multiply-add is fused.
//
// Guarantee: bit-identical results for bit-identical inputs on any platform
// with binary64 doubles, round-to-nearest-even, no excess precision and
// subnormals enabled (x86-64 SSE2, AArch64, RISC-V D), whatever the libm or
// -march. Not covered: x87 arithmetic (32-bit x86 without SSE2), flush-to-
// zero / denormals-are-zero modes, -ffast-math builds of this target.
// tests/compression:codec_golden_test pins the bits of all four functions at
// seeded inputs, in the default build and with -O2 -march=native (x86-64).
//
// Accuracy (checked against libm in the tests): DetExp and DetLog within
// 4 ulp of the true value on their domains; DetSigmoid within ~4e-16
// relative; DetLog1p within 4 ulp for x >= 0.
//   DetExp(x):  x = k ln2 + r, |r| <= ln2/2 (Cody-Waite two-part ln2),
//               e^r by its Taylor series to degree 13 (Horner), times 2^k.
//               +inf above 709.78, 0 below -745.14, NaN for NaN.
//   DetLog(x):  x = 2^e m, m in [sqrt(1/2), sqrt(2)), z = (m - 1)/(m + 1),
//               log m = 2 atanh z = 2 (z + z^3/3 + ... + z^25/25);
//               log x = e ln2 + log m. -inf at 0, NaN below 0 or for NaN,
//               +inf at +inf.
//   DetLog1p(x) = log(1 + x) for x >= 0: 2 atanh(x / (2 + x)) by the same
//               series (6 terms) for x < 1/16, else DetLog(u) +
//               (x - (u - 1)) / u with u = 1 + x rounded.
//               NaN for x < 0 or NaN.
//   DetSigmoid(x) = 1 / (1 + e^-x): 1/(1 + DetExp(-x)) for x >= 0,
//               e/(1 + e) with e = DetExp(x) for x < 0 (no cancellation);
//               0 and 1 at -inf and +inf.
#ifndef FLOWTAPE_COMPRESSION_DETERMINISTIC_MATH_H_
#define FLOWTAPE_COMPRESSION_DETERMINISTIC_MATH_H_

namespace flowtape::compression {

double DetExp(double x);
double DetLog(double x);
double DetLog1p(double x);
double DetSigmoid(double x);

}  // namespace flowtape::compression

#endif  // FLOWTAPE_COMPRESSION_DETERMINISTIC_MATH_H_
