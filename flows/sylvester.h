// Sylvester normalizing flows (van den Berg, Hasenclever, Tomczak & Welling,
// UAI 2018), on vectors [N, D].
//
// The paper's map (generative / posterior direction, closed form) is, as for
// planar flows, flowtape's Inverse:
//   Inverse(z):  x = z + Q R h(R~ Q^T z + b),   h = tanh
//                logdet = log|det dx/dz| = sum_m log(1 + h'(a_m) R~_mm R_mm),
//                a = R~ Q^T z + b
// Q [D, M] has orthonormal columns, R, R~ [M, M] are upper triangular, b [M].
// By Sylvester's determinant identity det(I_D + Q R H R~ Q^T) =
// det(I_M + H R~ R) with H = diag(h'(a)) and H R~ R upper triangular.
//
// Invertibility: the map is invertible iff every 1 + h'(.) R_mm R~_mm > 0,
// i.e. (tanh' in (0, 1]) R_mm R~_mm > -1. As in the paper it is kept by the
// parametrisation, here R_mm = c tanh(r_mm), R~_mm = c tanh(r~_mm) with free
// r, r~ and c = kMaxDiag = 1 - 2^-12, so R_mm R~_mm >= -c^2 = -1 + 2^-11 -
// 2^-24 for every parameter value, in float64 and float32 alike (c and c^2
// are exact in float32). (The paper's c = 1 is not enough: tanh rounds to
// exactly +-1 for |r| > ~19 in double, ~9 in float32, so R_mm R~_mm = -1, an
// infinite log-det and a division by zero in the Newton solve, would be
// reachable.) With c < 1, |log(1 + h' R_mm R~_mm)| <= 11 log 2 ~ 7.6 always,
// and Forward loses at most 1 / (1 - c^2) ~ 2048 times rounding near the
// bound: a conditioning limit, not a solver one.
// Entries of r, r~ above the diagonal are R, R~ there; those below are unused.
//
// Q, three variants (SylvesterOptions::q):
//   kOrthogonal  Q = qf(V) from a free V [D, M], M <= D, by Householder QR
//                (the Qr op, diag of its R made positive). Exactly orthonormal
//                to rounding and exactly differentiable (Qr's backward is
//                written with ops, so to any order), where the paper's
//                iterative Bjorck procedure is only as orthonormal as its
//                iteration count. V must have full column rank (a.s. for
//                random V). Needs D >= 2 to be learnable (in 1-D Q = +-1).
//   kHouseholder Q = H_K ... H_1 (householder.h), v [K, D], M = D.
//   kTriangular  Q = I, or with `reverse` the reversal permutation (the paper
//                alternates the two between layers); M = D, no Q parameters.
//
// Forward (data -> base) is computed NUMERICALLY (analytic_inverse() false)
// but exactly: with y = Q^T z the equation Q^T x = y + R h(R~ y + b) is upper
// triangular, so y_M, ..., y_1 are found one at a time, each the root of
//   g(y_m) = y_m + R_mm tanh(R~_mm y_m + s_m) - t_m,
//   g' = 1 + R_mm R~_mm tanh'(.) > 0,      |y_m - t_m| <= |R_mm|,
//   s_m = b_m + sum_{k>m} R~_mk y_k,  t_m = (Q^T x)_m - sum_{j>m} R_mj h(a_j),
// by safeguarded Newton/bisection to float64 machine precision whatever the
// dtype (float32 values are exact doubles; a non-finite input gives NaN
// values and a FlowResult::status naming the sample); then
//   z = x - Q R h(R~ y + b)     (so z - Q Q^T z = x - Q Q^T x: z_perp kept),
//   logdet = -sum_m log(1 + h'(a_m) R~_mm R_mm).
// Two back-substitution Newton sweeps from the converged y are recorded on
// the tape (each coordinate takes one Newton step given the already updated
// later ones; the sweep's Jacobian in y vanishes at the root and it converges
// quadratically), so first AND second derivatives of Forward w.r.t. x and
// every parameter are the exact implicit-function ones, as in planar.h.
// Conditional (context_dim = K > 0): the bias is amortised, the simplest
// form of the paper's encoder-amortised parameters,
//   b(c) = b + c W_c,   c = context [N, K], W_c [K, M] (starts at 0),
// with everything above per sample; without it the context is ignored.
#ifndef FLOWTAPE_FLOWS_SYLVESTER_H_
#define FLOWTAPE_FLOWS_SYLVESTER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

enum class SylvesterQ { kOrthogonal, kHouseholder, kTriangular };

struct SylvesterOptions {
  int64_t dim = 2;
  SylvesterQ q = SylvesterQ::kOrthogonal;
  int64_t m = 0;            // kOrthogonal: columns of Q, 1..dim (0: dim)
  int64_t reflections = 0;  // kHouseholder: K >= 1 (0: dim)
  bool reverse = false;     // kTriangular: Q = reversal permutation
  int64_t context_dim = 0;  // > 0: b(c) = b + c W_c
  // InvalidArgument naming the bad field (dim < 1, m outside 0..dim, ...).
  absl::Status Validate() const;
};

class Sylvester : public Flow {
 public:
  // V, v ~ N(0, 1); r, r~ ~ N(0, 1/M); b = 0.
  static absl::StatusOr<std::shared_ptr<Sylvester>> Create(
      const SylvesterOptions& o, Rng& rng);
  // An orthogonal Sylvester flow with the given Q [D, M] (orthonormal
  // columns, to 1e-10), upper triangular R, R~ [M, M] and b [M]. Errors if
  // R_mm R~_mm <= -1 (not invertible) or a diagonal entry is outside the
  // parametrisation's range (-kMaxDiag, kMaxDiag), or on shapes / non-finite
  // values.
  static absl::StatusOr<std::shared_ptr<Sylvester>> Create(
      const Tensor& q, const Tensor& r, const Tensor& r_tilde, const Tensor& b);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "sylvester"; }

  const SylvesterOptions& options() const { return o_; }
  Tensor Q() const;       // [D, M], orthonormal columns
  Tensor R() const;       // [M, M] upper triangular, |R_mm| < kMaxDiag
  Tensor RTilde() const;  // [M, M] upper triangular, |R~_mm| < kMaxDiag

  // Bound c on |R_mm|, |R~_mm|: 1 - 2^-12.
  static constexpr double kMaxDiag = 1.0 - 1.0 / 4096;

 private:
  Sylvester(const SylvesterOptions& o, Rng& rng);
  Tensor Triangular(const Tensor& raw) const;
  Tensor Bias(const Tensor& context, int64_t n) const;  // [1, M] or [N, M]
  SylvesterOptions o_;
  Tensor q_raw_, r_, rt_, b_;  // q_raw_: V, v, or Q (triangular: a buffer)
  Tensor upper_mask_;          // buffer [M, M], 1 strictly above the diagonal
  Tensor w_context_;           // [K, M] if conditional
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SYLVESTER_H_
