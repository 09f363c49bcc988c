// Direct checks for flows (the shared harness is
// tests/flows/harness.h). Every check returns a worst-case error so tests can
// assert a tolerance; a NaN anywhere (value, log-det, gradient) gives +inf:
//   RoundTripError:   max |Inverse(Forward(x)) - x| and the same for z
//   LogdetError:      max over samples |logdet - log|det J(x)||, J the
//                     brute-force autodiff Jacobian of Forward (flattened)
//   AntisymmetryError max |Forward(x).logdet + Inverse(Forward(x).z).logdet|
//   ParamGradError:   NLL = mean(0.5 |z|^2 - logdet) gradient w.r.t. every
//                     parameter (up to max_coords per tensor) vs central
//                     finite differences, relative error.
#ifndef FLOWTAPE_TESTS_FLOWS_BIJECTION_CHECKS_H_
#define FLOWTAPE_TESTS_FLOWS_BIJECTION_CHECKS_H_

#include "flows/flow.h"

namespace flowtape::testing {

double RoundTripError(const flows::Flow& f, const Tensor& x,
                      const Tensor& context = Tensor());
double LogdetError(const flows::Flow& f, const Tensor& x,
                   const Tensor& context = Tensor());
double AntisymmetryError(const flows::Flow& f, const Tensor& x,
                         const Tensor& context = Tensor());
double ParamGradError(const flows::Flow& f, const Tensor& x,
                      const Tensor& context = Tensor(), int max_coords = 6);
// Adds N(0, scale^2) noise to every parameter (random, non-identity flows).
void Perturb(flows::Flow& f, double scale, Rng& rng);

}  // namespace flowtape::testing

#endif  // FLOWTAPE_TESTS_FLOWS_BIJECTION_CHECKS_H_
