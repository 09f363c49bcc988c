#include "compression/deterministic_math.h"

#include <cmath>
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
  return std::ldexp(p, static_cast<int>(k));
}

double DetLog(double x) {
  if (x != x || x < 0.0) return kNaN;
  if (x == 0.0) return -kInf;
  if (x == kInf) return kInf;
  int e = 0;
  double m = std::frexp(x, &e);  // x = m 2^e, m in [1/2, 1)
  if (m < kSqrtHalf) {
    m *= 2.0;
    e -= 1;
  }
  const double z = (m - 1.0) / (m + 1.0);  // |z| <= 0.1716
  const double w = z * z;
  // atanh(z) / z = sum_{i=0}^{12} w^i / (2i + 1).
  double s = 1.0 / 25.0;
  for (int i = 11; i >= 0; --i) s = s * w + 1.0 / (2.0 * i + 1.0);
  const double log_m = 2.0 * z * s;
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
  // log(1 + x) = sum_{i=1}^{16} (-1)^(i+1) x^i / i = x (1 - x/2 + x^2/3 ...).
  double s = -1.0 / 16.0;
  for (int i = 15; i >= 1; --i) {
    s = s * x + ((i % 2 == 1) ? 1.0 : -1.0) / static_cast<double>(i);
  }
  return x * s;
}

double DetSigmoid(double x) {
  if (x != x) return kNaN;
  if (x >= 0.0) return 1.0 / (1.0 + DetExp(-x));
  const double e = DetExp(x);
  return e / (1.0 + e);
}

}  // namespace flowtape::compression
