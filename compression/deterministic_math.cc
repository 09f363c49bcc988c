#include "compression/deterministic_math.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace flowtape::compression {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// ln 2 split so that k * kLn2Hi is exact for |k| < 2^20 (fdlibm's values).
constexpr double kLn2Hi = 0x1.62e42feep-1;        // 6.93147180369123816490e-01
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;  // 1.90821492927058770002e-10
constexpr double kLog2e = 0x1.71547652b82fep0;    // 1 / ln 2
constexpr double kSqrtHalf = 0x1.6a09e667f3bcdp-1;  // sqrt(1/2)

// 2^k for -1022 <= k <= 1023, built from its bits.
double PowerOfTwo(int k) {
  const uint64_t bits = static_cast<uint64_t>(k + 1023) << 52;
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// atanh(z) / z = sum_{i=0}^{n-1} w^i / (2i + 1) for w = z^2 (Horner from
// the top; the coefficients are correctly rounded constants).
constexpr int kAtanhTerms = 13;
constexpr double kInvOdd[kAtanhTerms] = {
    1.0,        1.0 / 3.0,  1.0 / 5.0,  1.0 / 7.0,  1.0 / 9.0,
    1.0 / 11.0, 1.0 / 13.0, 1.0 / 15.0, 1.0 / 17.0, 1.0 / 19.0,
    1.0 / 21.0, 1.0 / 23.0, 1.0 / 25.0,
};
double AtanhSeries(double w, int n) {
  double s = kInvOdd[n - 1];
  for (int i = n - 2; i >= 0; --i) s = s * w + kInvOdd[i];
  return s;
}

}  // namespace

double DetExp(double x) {
  if (x != x) return kNaN;
  if (x > 709.782712893384) return kInf;
  if (x < -745.1332191019412) return 0.0;
  // k = round(x / ln2) (half away from zero; any fixed rule will do).
  const double t = x * kLog2e;
  const double k = t >= 0.0 ? std::floor(t + 0.5) : -std::floor(-t + 0.5);
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  // e^r = sum_{i=0}^{13} r^i / i!, Horner from the top.
  constexpr double kInvFact[14] = {
      1.0,
      1.0,
      1.0 / 2.0,
      1.0 / 6.0,
      1.0 / 24.0,
      1.0 / 120.0,
      1.0 / 720.0,
      1.0 / 5040.0,
      1.0 / 40320.0,
      1.0 / 362880.0,
      1.0 / 3628800.0,
      1.0 / 39916800.0,
      1.0 / 479001600.0,
      1.0 / 6227020800.0,
  };
  double p = kInvFact[13];
  for (int i = 12; i >= 0; --i) p = p * r + kInvFact[i];
  // p 2^k: one exact multiplication by a power of two in the normal range
  // (the same bits as std::ldexp, without the call).
  const int ki = static_cast<int>(k);
  if (ki >= -1022 && ki <= 1023) return p * PowerOfTwo(ki);
  if (ki > 1023) return p * PowerOfTwo(1023) * PowerOfTwo(ki - 1023);
  return std::ldexp(p, ki);  // subnormal result: one rounding
}

double DetLog(double x) {
  if (x != x || x < 0.0) return kNaN;
  if (x == 0.0) return -kInf;
  if (x == kInf) return kInf;
  // x = m 2^e, m in [1/2, 1): from the bits for normal x (what std::frexp
  // returns, without the call), by std::frexp for subnormal x.
  int e = 0;
  double m;
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const int biased = static_cast<int>(bits >> 52);  // x > 0: no sign bit
  if (biased > 0) {
    e = biased - 1022;
    bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1022} << 52);
    std::memcpy(&m, &bits, sizeof m);
  } else {
    m = std::frexp(x, &e);
  }
  if (m < kSqrtHalf) {
    m *= 2.0;
    e -= 1;
  }
  const double z = (m - 1.0) / (m + 1.0);  // |z| <= 0.1716
  const double w = z * z;
  const double log_m = 2.0 * z * AtanhSeries(w, kAtanhTerms);
  const double de = static_cast<double>(e);
  return de * kLn2Hi + (log_m + de * kLn2Lo);
}

double DetLog1p(double x) {
  if (x != x || x < 0.0) return kNaN;
  if (x >= 0.0625) {
    // u = 1 + x rounds; (x - (u - 1)) / u restores the lost part to first
    // order (u - 1 is exact for u <= 2).
    const double u = 1.0 + x;
    return DetLog(u) + (x - (u - 1.0)) / u;
  }
  // log(1 + x) = 2 atanh(z), z = x / (2 + x) <= 0.0303, w = z^2 <= 9.2e-4:
  // six terms leave w^6 / 13 < 5e-20.
  const double z = x / (2.0 + x);
  return 2.0 * z * AtanhSeries(z * z, 6);
}

double DetSigmoid(double x) {
  if (x != x) return kNaN;
  if (x >= 0.0) return 1.0 / (1.0 + DetExp(-x));
  const double e = DetExp(x);
  return e / (1.0 + e);
}

}  // namespace flowtape::compression
