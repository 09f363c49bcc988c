// Infomax ICA (Bell & Sejnowski 1995) as maximum likelihood of a K = 1 flow:
// a LinearFlow (z = A (x - mean)) on a standard logistic base,
//   log p(x) = sum_j log logistic((A (x - mean))_j) + log|det A|,
// fitted by full-batch Adam on the mean NLL. The logistic prior is
// super-Gaussian, so this separates super-Gaussian sources (Laplace, speech);
// sources are recovered up to order and scale. With mixture_components = K
// > 0 the base is instead a learnable FactorizedMixture (K 1-D Gaussians per
// source, distribution.h), whose marginals can also be sub-Gaussian
// (uniform-like, sinusoids): maximum likelihood then separates both kinds
// (independent factor analysis, Attias 1999).
//
// AmariIndex(P) (Amari et al. 1996) scores P = A M against the true mixing M:
//   [sum_i (sum_j |p_ij| / max_k |p_ik| - 1) + sum_j (sum_i |p_ij| /
//    max_k |p_kj| - 1)] / (2 D (D - 1)),
// 0 iff P is a scaled permutation (perfect separation), at most 1.
#ifndef FLOWTAPE_FLOWS_ICA_H_
#define FLOWTAPE_FLOWS_ICA_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/flow_model.h"

namespace flowtape::flows {

struct IcaOptions {
  int steps = 400;
  double lr = 0.05;            // Adam
  int mixture_components = 0;  // 0: logistic base (Infomax)
  // InvalidArgument unless steps >= 0, 0 < lr < inf, mixture_components >= 0.
  absl::Status Validate() const;
};

struct IcaResult {
  Tensor unmixing;          // A [D, D]
  Tensor mixing;            // W = A^-1 [D, D]
  Tensor mean;              // [D], subtracted before unmixing
  Tensor sources;           // A (x - mean), [N, D]
  std::vector<double> nll;  // mean NLL per step (nats)
  // The fitted density of x - mean: base (Logistic or FactorizedMixture) and
  // the LinearFlow of `unmixing`, in x's dtype.
  std::shared_ptr<FlowModel> model;
};

// x [N, D] with N > D finite rows; otherwise a Status naming the problem.
// The model computes in x's dtype (float32 or float64).
absl::StatusOr<IcaResult> FitInfomaxIca(const Tensor& x,
                                        const IcaOptions& options = {});

// P [D, D], D >= 2.
double AmariIndex(const Tensor& p);

// [n, d] independent Laplace(0, 1) samples.
Tensor LaplaceSources(int64_t n, int64_t d, Rng& rng);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_ICA_H_
