#include "autodiff/rng.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/numeric/int128.h"
#include "autodiff/check.h"

// No fused multiply-adds in this file: where the target has FMA (e.g.
// -march=native) compilers contract a * b + c into one rounding, which
// changed about one Normal() draw in seven against a default build. Every
// product and sum here rounds separately, so the bits depend on the seed only.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace flowtape {

std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> c,
                                   std::array<uint32_t, 2> k) {
  constexpr uint64_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += kW0;
      k[1] += kW1;
    }
    const uint64_t p0 = kM0 * c[0], p1 = kM1 * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0],
         static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1],
         static_cast<uint32_t>(p0)};
  }
  return c;
}

double PortableLog(double x) {
  FT_CHECK(x > 0 && std::isfinite(x), "PortableLog: want finite x > 0, got ",
           x);
  // x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f),
  // f = (m - 1) / (m + 1), |f| < 0.1716: 2 (f + f^3/3 + ... + f^23/23).
  int e;
  double m;
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(x));
  if (const int biased = static_cast<int>(bits >> 52); biased > 0) {
    // Normal x: std::frexp's m and e straight from the bits.
    e = biased - 1022;
    bits = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1022} << 52);
    std::memcpy(&m, &bits, sizeof(m));
  } else {
    m = std::frexp(x, &e);  // m in [0.5, 1)
  }
  if (m < 0.70710678118654752440) {
    m *= 2.0;
    e -= 1;
  }
  const double f = (m - 1.0) / (m + 1.0), s = f * f;
  // 1 / k for k = 3, 5, ..., 23 (rounded as 1.0 / k rounds at run time).
  static constexpr double kInverse[] = {1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9,
                                        1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17,
                                        1.0 / 19, 1.0 / 21, 1.0 / 23};
  double r = kInverse[10];
  for (int k = 9; k >= 0; --k) r = kInverse[k] + s * r;
  const double log_m = 2.0 * f + 2.0 * f * (s * r);
  // ln 2 split so that e * kLn2Hi is exact (fdlibm's constants).
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  return e * kLn2Hi + (e * kLn2Lo + log_m);
}

double PortableExp(double x) {
  if (std::isnan(x)) return x;
  if (x > 709.78) return HUGE_VAL;
  if (x < -745.2) return 0.0;
  // x = k ln 2 + r, |r| <= ln2 / 2; e^r by its Taylor series (|r| < 0.347:
  // 18 terms reach 1e-19), then scaled by 2^k exactly.
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double k = std::nearbyint(x / (kLn2Hi + kLn2Lo));
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  double sum = 1.0, term = 1.0;
  for (int i = 1; i <= 18; ++i) {
    term = term * r / i;
    sum += term;
  }
  return std::ldexp(sum, static_cast<int>(k));
}

Rng::Position Rng::position() const {
  uint64_t spare;
  std::memcpy(&spare, &spare_, 8);
  return {counter_,   words_[0], words_[1], static_cast<uint64_t>(next_word_),
          has_spare_, spare};
}

bool Rng::Seek(const Position& p) {
  // The words must be block counter - 1's (none before the first block),
  // and a pending normal finite.
  Rng block(seed_, stream_);
  block.counter_ = p[0] - 1;
  if (p[0] > 0) block.Refill();
  double spare;
  std::memcpy(&spare, &p[5], 8);
  if (p[1] != block.words_[0] || p[2] != block.words_[1] || p[3] > 2 ||
      (p[0] == 0 && p[3] != 2) || p[4] > 1 ||
      (p[4] == 1 && !std::isfinite(spare)))
    return false;
  counter_ = p[0];
  words_ = {p[1], p[2]};
  next_word_ = static_cast<int>(p[3]);
  has_spare_ = p[4] == 1;
  std::memcpy(&spare_, &p[5], 8);
  return true;
}

void Rng::Refill() {
  const auto r = Philox4x32(
      {static_cast<uint32_t>(counter_), static_cast<uint32_t>(counter_ >> 32),
       static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)},
      {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
  ++counter_;
  words_ = {uint64_t{r[0]} | uint64_t{r[1]} << 32,
            uint64_t{r[2]} | uint64_t{r[3]} << 32};
  next_word_ = 0;
}

uint64_t Rng::Bits64() {
  if (next_word_ >= 2) Refill();
  return words_[next_word_++];
}

double Rng::Uniform() { return (Bits64() >> 11) * 0x1.0p-53; }

double Rng::Normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * Uniform() - 1.0;
    v = 2.0 * Uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double scale = std::sqrt(-2.0 * PortableLog(s) / s);
  spare_ = v * scale;
  has_spare_ = true;
  return u * scale;
}

int64_t Rng::UniformInt(int64_t n) {
  FT_CHECK(n >= 1, "Rng::UniformInt: want n >= 1, got ", n);
  // Lemire (2019): the high word of w * n is uniform on [0, n) once the low
  // words below (2^64 mod n) are rejected.
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t threshold = (0 - un) % un;  // 2^64 mod n
  for (;;) {
    const absl::uint128 m = absl::uint128(Bits64()) * un;
    if (absl::Uint128Low64(m) >= threshold)
      return static_cast<int64_t>(absl::Uint128High64(m));
  }
}

int64_t Rng::Categorical(const std::vector<double>& p) {
  double total = 0;
  for (double w : p) {
    FT_CHECK(w >= 0 && std::isfinite(w),
             "Rng::Categorical: weights must be finite and >= 0, got ", w);
    total += w;
  }
  FT_CHECK(total > 0, "Rng::Categorical: weights sum to 0");
  const double u = Uniform() * total;
  double cum = 0;
  int64_t last = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    cum += p[i];
    last = static_cast<int64_t>(i);
    if (u < cum) return last;
  }
  return last;  // rounding put u at the very top: the last positive weight
}

int64_t Rng::Geometric(double p) {
  FT_CHECK(p > 0 && p <= 1, "Rng::Geometric: want p in (0, 1], got ", p);
  if (p == 1) return 0;
  const double u = 1.0 - Uniform();  // (0, 1]
  return static_cast<int64_t>(
      std::floor(PortableLog(u) / PortableLog(1.0 - p)));
}

int64_t Rng::Poisson(double lambda) {
  FT_CHECK(lambda >= 0 && lambda < 1e6,
           "Rng::Poisson: want 0 <= lambda < 1e6, got ", lambda);
  // Arrivals of a unit-rate Poisson process in [0, lambda]: exponential
  // gaps -log(U), U in (0, 1] (portable: PortableLog).
  int64_t k = 0;
  for (double t = -PortableLog(1.0 - Uniform()); t <= lambda;
       t -= PortableLog(1.0 - Uniform()))
    ++k;
  return k;
}

double Rng::Gamma(double alpha) {
  FT_CHECK(alpha > 0 && std::isfinite(alpha),
           "Rng::Gamma: want a finite alpha > 0, got ", alpha);
  if (alpha < 1) {
    const double g = Gamma(alpha + 1.0);
    const double u = 1.0 - Uniform();  // (0, 1]
    return g * PortableExp(PortableLog(u) / alpha);
  }
  const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = 1.0 - Uniform();  // (0, 1]
    if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;
    if (PortableLog(u) < 0.5 * x * x + d * (1.0 - v + PortableLog(v)))
      return d * v;
  }
}

}  // namespace flowtape
