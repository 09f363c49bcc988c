// Planar flow (Rezende & Mohamed 2015), on vectors [N, D].
//
// The paper's map is generative (base -> data) and closed-form, so it is
// flowtape's Inverse:
//   Inverse(z):  x = z + u^ tanh(w.z + b)
//                logdet = log|det dx/dz| = log(1 + (w.u^) tanh'(w.z + b))
// u^ reparametrises a free vector u so that w.u^ >= -1 (the map is then
// strictly increasing along w, hence invertible):
//   u^ = u + (m(w.u) - w.u) w / |w|^2,   m(a) = -1 + softplus(a) > -1.
// Forward (data -> base) has no closed form and is computed NUMERICALLY
// (analytic_inverse() is false): writing z = x - u^ tanh(a + b) with a = w.z,
// the scalar a solves
//   g(a) = a + (w.u^) tanh(a + b) - w.x = 0,
//   g'(a) = 1 + (w.u^) tanh'(a + b) > 0,
// bracketed by |a - w.x| <= |w.u^|; safeguarded Newton/bisection to float64
// machine precision whatever the flow's dtype (float32 values are exact
// doubles), so float32 inherits only the rounding of the steps below; a
// sample whose w.x is not finite gets NaN values and a status naming it
// (FlowResult::status; the bracket makes the solve itself always converge).
// Two Newton steps from the converged root are then recorded on
// the tape: the first makes da/d(x, w, u, b) the exact implicit-function
// derivative -g_theta / g', the second (Newton converges quadratically, so a
// start O(e) off lands O(e^4) away) makes second derivatives exact too, as
// Hessian-vector products and gradient-of-gradient training need.
//   Forward(x): z = x - u^ tanh(a + b),  logdet = -log(1 + (w.u^) tanh'(a + b))
// The context is ignored (not a conditioned family).
#ifndef FLOWTAPE_FLOWS_PLANAR_H_
#define FLOWTAPE_FLOWS_PLANAR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Planar : public Flow {
 public:
  // w, u ~ N(0, 1/D), b = 0; InvalidArgument unless d >= 1.
  static absl::StatusOr<std::shared_ptr<Planar>> Create(int64_t d, Rng& rng);
  // Explicit w [D], u [D] (used as u^: needs w != 0 and w.u > -1), b.
  static absl::StatusOr<std::shared_ptr<Planar>> Create(const Tensor& w,
                                                        const Tensor& u,
                                                        double b);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "planar"; }

  Tensor u_hat() const;  // the constrained u (w.u^ > -1)

 private:
  Planar(int64_t d, Rng& rng);
  Tensor w_, u_, b_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_PLANAR_H_
