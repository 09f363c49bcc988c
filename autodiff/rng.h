// Rng: the one random source of flowtape, portable and splittable.
//
// Engine: Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as
// easy as 1, 2, 3"), a counter-based generator: block k of stream s under
// key `seed` is
//   (r0, r1, r2, r3) = philox_10((k_lo, k_hi, s_lo, s_hi), (seed_lo, seed_hi))
// ten rounds of  (L0, R0, L1, R1) -> (hi(M1 R1) ^ L1 ^ key0, lo(M1 R1),
//                                     hi(M0 R0) ^ L0 ^ key1, lo(M0 R0))
// with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key bumped by
// (0x9E3779B9, 0xBB67AE85) after each round. Streams are independent: data-
// parallel ranks and threads use Rng(seed, stream = rank).
//
// Draws (all from 64-bit words w = r0 | r1 << 32, then r2 | r3 << 32, ...):
//   Uniform()      (w >> 11) * 2^-53                       in [0, 1)
//   Normal()       Marsaglia's polar method on u, v = 2 Uniform() - 1:
//                  s = u^2 + v^2 in (0, 1), x = u sqrt(-2 log(s) / s) (and
//                  the next call returns v sqrt(...)); log is our own
//                  (PortableLog), sqrt is IEEE-exact, and rng.cc is
//                  compiled without fused multiply-adds, so a seed gives
//                  the same bits with any compiler, standard library and
//                  target flags (-march=native included).
//   UniformInt(n)  in [0, n), n >= 1, unbiased (Lemire's multiply-shift with
//                  rejection).
//   Rademacher()   +1 or -1 from one bit.
//   Bernoulli(p)   Uniform() < p.
//   Categorical(p) the first i with Uniform() * sum(p) < p[0] + ... + p[i]
//                  (p >= 0, sum > 0; zero entries are never drawn).
//   Geometric(p)   failures before the first success, p in (0, 1]:
//                  floor(log(U) / log(1 - p)), U = 1 - Uniform() in (0, 1].
//   Gamma(a)       a > 0, scale 1: Marsaglia & Tsang (2000) for a >= 1;
//                  a < 1 as Gamma(a + 1) U^(1/a) (computed as
//                  exp(log(U) / a) with PortableExp).
//   Poisson(l)     0 <= l < 1e6: arrivals of a unit-rate Poisson process in
//                  [0, l] (exponential gaps -log U; cost O(l)).
//   Shuffle(v)     Fisher-Yates with UniformInt.
// Programming errors (n < 1, p outside its range) fail loudly.
#ifndef FLOWTAPE_AUTODIFF_RNG_H_
#define FLOWTAPE_AUTODIFF_RNG_H_

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace flowtape {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0, uint64_t stream = 0)
      : seed_(seed), stream_(stream) {}

  uint64_t Bits64();
  double Uniform();
  double Normal();
  int64_t UniformInt(int64_t n);
  double Rademacher() { return (Bits64() >> 63) ? 1.0 : -1.0; }
  bool Bernoulli(double p) { return Uniform() < p; }
  int64_t Categorical(const std::vector<double>& p);
  int64_t Geometric(double p);
  int64_t Poisson(double lambda);
  double Gamma(double alpha);
  template <typename T>
  void Shuffle(std::vector<T>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
      std::swap(v[i], v[UniformInt(i + 1)]);
  }

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }

  // The generator's position in its stream (everything but seed and
  // stream: the next Philox block, the unread words of the current one, the
  // polar method's pending normal), e.g. to save with a checkpoint.
  // Seek(position()) on an Rng of the same seed and stream continues its
  // draws exactly; false (nothing changed) for a position no Rng of this
  // seed and stream can have (words that are not its block's, a word index
  // past 2, a non-finite pending normal).
  using Position = std::array<uint64_t, 6>;
  Position position() const;
  bool Seek(const Position& p);

 private:
  void Refill();
  uint64_t seed_, stream_;
  uint64_t counter_ = 0;  // next Philox block
  std::array<uint64_t, 2> words_{};
  int next_word_ = 2;  // words_ exhausted
  bool has_spare_ = false;
  double spare_ = 0.0;  // the polar method's second normal
};

// The Philox4x32-10 block function (exposed for tests).
std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> counter,
                                   std::array<uint32_t, 2> key);

// Natural log (x > 0) and exp from IEEE-exact operations only (frexp,
// ldexp, +, *, /): the same bits on every platform, within a few ulp of the
// true values. The generator's draws use these, never the C library's.
double PortableLog(double x);
double PortableExp(double x);

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_RNG_H_
