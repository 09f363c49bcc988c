// Preprocessing of discrete data for continuous flows, and bits per dimension.
//
// Uniform dequantisation (Theis et al. 2016): integer levels k in {0..L-1}
//   v = (k + u) / L,  u ~ U[0, 1)            v in [0, 1)
// A density p(v) on [0,1)^D gives a lower bound on the discrete
// log-likelihood:  log P(k) >= E_u[log p(v)] - D log L.
//
// Logit preprocessing (RealNVP, Dinh et al. 2017), alpha in [0, 0.5):
//   s = alpha + (1 - 2 alpha) v,   y = logit(s) = log s - log(1 - s)
//   log|dy/dv| = log(1 - 2 alpha) - log s - log(1 - s)   (per dimension)
// LogitTransform returns y and logdet = sum_d log|dy/dv| per sample [N], so
//   log p(v) = log p_Y(y) + logdet.
//
// Bits per dimension of a model of v (nll_v = -log p(v) in nats, per sample):
//   bpd = (nll_v + D log L) / (D log 2).
#ifndef FLOWTAPE_DATA_PREPROCESS_H_
#define FLOWTAPE_DATA_PREPROCESS_H_

#include <cstdint>
#include <vector>

#include "autodiff/tensor.h"

namespace flowtape::data {

// (x + u) / levels with fresh u ~ U[0,1) per entry; x holds integer levels.
Tensor Dequantize(const Tensor& x, int levels, Rng& rng);

struct LogitResult {
  Tensor y;       // same shape as v
  Tensor logdet;  // [N]: sum over all non-batch axes of log|dy/dv|
};
// Differentiable in v (built from tape ops).
LogitResult LogitTransform(const Tensor& v, double alpha);
// v = (sigmoid(y) - alpha) / (1 - 2 alpha): maps model samples back to [0,1).
Tensor InverseLogit(const Tensor& y, double alpha);

// bpd from a mean NLL of v (nats per sample) in `dims` dimensions.
double BitsPerDim(double nll_v, int64_t dims, int levels = 256);

// Rows `index` of x along axis 0 (any rank), as a constant in x's dtype.
Tensor TakeRows(const Tensor& x, const std::vector<int64_t>& index);
// A random permutation of 0..n-1.
std::vector<int64_t> Permutation(int64_t n, Rng& rng);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_PREPROCESS_H_
