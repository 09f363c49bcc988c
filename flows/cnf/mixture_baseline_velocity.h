// A flow-matching velocity field = the exact field of a per-dimension
// Gaussian-mixture fit of the data + a learned residual net:
//   v(t, x, c) = g(t, x) + F(t, x, c).
//
// g is the marginal field of the optimal-transport path (flows/matching/
// path.h: x_t = t x1 + s_t x0, s_t = 1 - (1 - s) t, x0 ~ N(0, I),
// s = sigma_min) when the data are independent per dimension k with
// density sum_j w_jk N(m_jk, q_jk):
//   V_jk = t^2 q_jk + s_t^2,    l_jk = log w_jk - log(V_jk) / 2
//                                      - (x_k - t m_jk)^2 / (2 V_jk),
//   r_jk = softmax_j(l_jk),     e_jk = m_jk + (t q_jk / V_jk)(x_k - t m_jk),
//   g_k  = (sum_j r_jk e_jk - (1 - s) x_k) / s_t
// (E[x1_k | x_t,k] = sum_j r_jk e_jk, and u_t = (x1 - (1 - s) x) / s_t).
// Its flow alone carries N(0, I) to that fit convolved with N(0, s^2 I).
// The residual F learns what the independent fit misses: regress v on the
// CFM target as usual (flows/matching/cfm.h). Why: data with a sharp
// per-dimension mode (the background level of dequantised, logit-
// transformed images: a spike of width ~0.07 at logit(alpha)) need a field
// whose contraction grows like 1 / s_t near t = 1; a tanh net with
// sigmoid time gates learns that slowly, g has it in closed form.
//
// g is elementwise in x, so tr(dg/dx) = sum_k dg_k/dx_k in closed form:
//   dE_k/dx_k = sum_j r_jk c_jk + sum_j r_jk e_jk (l'_jk - sum_i r_ik l'_ik),
//   c_jk = t q_jk / V_jk,  l'_jk = -(x_k - t m_jk) / V_jk,
//   dg_k/dx_k = (dE_k/dx_k - (1 - s)) / s_t,
// and ValueAndTrace adds F's closed-form trace when F has one.
//
// The mixture lives in buffers (saved with the model, never trained):
// "log_weight", "mean", "variance" [K, d] and "enabled" (scalar 0 / 1).
// A new field has enabled = 0, i.e. v = F exactly (what the net alone
// was); SetMixture fits g in. Time: t in [0, 1] runs noise -> data, scalar
// or [N, 1], a tensor (may require grad) or a double. Create:
// InvalidArgument for a null F, K < 1 or s outside (0, 1); SetMixture:
// InvalidArgument for shapes other than [K, d], non-finite values, weights
// <= 0 or variances <= 0.
#ifndef FLOWTAPE_FLOWS_CNF_MIXTURE_BASELINE_VELOCITY_H_
#define FLOWTAPE_FLOWS_CNF_MIXTURE_BASELINE_VELOCITY_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"

namespace flowtape::flows::cnf {

class MixtureBaselineVelocity : public CnfDynamics {
 public:
  static absl::StatusOr<std::shared_ptr<MixtureBaselineVelocity>> Create(
      std::shared_ptr<CnfDynamics> residual, int64_t components,
      double sigma_min);

  // weights, means, variances [K, d] (weights need not sum to 1 per
  // column: each column is normalised). Enables g.
  absl::Status SetMixture(const Tensor& weights, const Tensor& means,
                          const Tensor& variances);
  bool enabled() const;

  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return residual_->dim(); }
  int64_t context_dim() const override { return residual_->context_dim(); }
  bool has_closed_form_trace() const override {
    return residual_->has_closed_form_trace();
  }
  Tensor ValueAndTrace(const Tensor& t, const Tensor& z, const Tensor& context,
                       Tensor* trace) const override;

  // g(t, x) alone (zero when disabled) and, if trace != nullptr, its
  // closed-form trace [N, 1].
  Tensor Baseline(const Tensor& t, const Tensor& z, Tensor* trace) const;
  const std::shared_ptr<CnfDynamics>& residual() const { return residual_; }
  double sigma_min() const { return sigma_min_; }

 private:
  MixtureBaselineVelocity(std::shared_ptr<CnfDynamics> residual,
                          int64_t components, double sigma_min);
  std::shared_ptr<CnfDynamics> residual_;
  int64_t components_;
  double sigma_min_;
  Tensor log_weight_, mean_, variance_, enabled_;
};

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_MIXTURE_BASELINE_VELOCITY_H_
