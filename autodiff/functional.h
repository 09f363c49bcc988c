// Functional autodiff on top of Grad():
//   Vjp(f, x, v)          = (f(x), v' J)          J = df/dx
//   Jvp(f, x, u)          = (f(x), J u)           by the double-VJP trick:
//                           J u = d/dw [ (J' w) . u ]  (J' w is linear in w)
//   Jacobian(f, x)        = J as [numel(f), numel(x)], one VJP per output
//   BatchJacobian(f, x)   = per-sample J for f: [N, D] -> [N, M] whose rows
//                           are independent: [N, M, D], M VJPs in all
//   HessianVectorProduct  = H v for scalar f (double backward)
//   ExactTrace(f, x)      = tr(J_n) per sample for f: [N, D] -> [N, D], D VJPs
//   HutchinsonTrace       = eps' J eps per sample (unbiased for tr J when
//                           E[eps eps'] = I): Gaussian or Rademacher eps.
// With create_graph the results stay differentiable (w.r.t. x and any
// parameters f uses). If x does not require grad, a leaf copy is used.
#ifndef FLOWTAPE_AUTODIFF_FUNCTIONAL_H_
#define FLOWTAPE_AUTODIFF_FUNCTIONAL_H_

#include <functional>
#include <utility>

#include "autodiff/tensor.h"

namespace flowtape {

using TensorFn = std::function<Tensor(const Tensor&)>;

std::pair<Tensor, Tensor> Vjp(const TensorFn& f, const Tensor& x,
                              const Tensor& v, bool create_graph = false);
std::pair<Tensor, Tensor> Jvp(const TensorFn& f, const Tensor& x,
                              const Tensor& u, bool create_graph = false);
Tensor Jacobian(const TensorFn& f, const Tensor& x, bool create_graph = false);
Tensor BatchJacobian(const TensorFn& f, const Tensor& x,
                     bool create_graph = false);
Tensor HessianVectorProduct(const TensorFn& f, const Tensor& x, const Tensor& v,
                            bool create_graph = false);

enum class Noise { kGaussian, kRademacher };
// Draws noise of `shape` (Gaussian or +-1).
Tensor SampleNoise(const Shape& shape, Noise noise, Rng& rng,
                   DType dtype = kFloat64);
Tensor ExactTrace(const TensorFn& f, const Tensor& x,
                  bool create_graph = false);
// Uses the given noise eps (shape of x) so callers can reuse one draw.
Tensor HutchinsonTrace(const TensorFn& f, const Tensor& x, const Tensor& eps,
                       bool create_graph = false);

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_FUNCTIONAL_H_
