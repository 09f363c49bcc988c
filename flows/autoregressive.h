// Autoregressive flows driven by a MADE conditioner: MAF, IAF and
// autoregressive neural spline flows.
//
// An autoregressive transform applies an elementwise bijection tau
// (elementwise.h) to every dimension, with parameters from a MADE of the
// *conditioning* side:
//   u_i = tau(v_i; theta_i(v_<i)),  theta = MADE(v, context)
// which is evaluated in one pass from v, and inverted in D sequential passes
// (pass k fixes the dimension of position k; each pass is one whole-batch
// MADE evaluation, and the last pass also gives the log-determinant). The D
// passes are differentiable (exact gradients of the inverse), so with
// recording on the tape holds D MADE graphs: sample under NoGradScope unless
// gradients through sampling are needed.
//
// inverted = false (MAF, Papamakarios et al. 2017): the MADE sees the data x,
//   Forward  z = tau(x; theta(x))                           (one pass)
//   Inverse  x solves z = tau(x; theta(x))                  (D passes)
// inverted = true (IAF, Kingma et al. 2016): the MADE sees the base variable
// z, sampling is one pass, density evaluation takes D passes:
//   Inverse  x = tau(z; theta(z))                            (fast)
//   Forward  z solves x = tau(z; theta(z))                   (D passes)
// i.e. IAF = Invert(MAF) with tau and tau^-1 exchanged. The logdets follow
// flow.h: Forward's is log|det dz/dx|. With the default transform kAffineMaf
// (theta = (mu, alpha)) MAF is z_i = (x_i - mu_i) exp(-alpha_i), logdet =
// -sum alpha_i; kSpline gives the autoregressive neural spline flow, kDsf
// NAF's deep sigmoidal flow, kUmnn UMNN-MAF, kSos SOS flows and kBernstein
// Bernstein-polynomial flows (their numeric inverse failing in the last of
// the D passes is reported in FlowResult::status; an input that makes it
// fail, such as a NaN, fails every pass).
// MADE output column P i + p is parameter p of dimension i.
#ifndef FLOWTAPE_FLOWS_AUTOREGRESSIVE_H_
#define FLOWTAPE_FLOWS_AUTOREGRESSIVE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/elementwise.h"
#include "flows/flow.h"
#include "flows/made.h"

namespace flowtape::flows {

struct AutoregressiveOptions {
  // The conditioner; params_per_dim and zero_last are set here (P of the
  // transform, and a fresh flow starts at theta = 0).
  MadeOptions made;
  ElementwiseOptions transform{ElementwiseKind::kAffineMaf};
  bool inverted = false;  // IAF
  // InvalidArgument for invalid MADE (made.h) or transform options.
  absl::Status Validate() const;
};

class Autoregressive : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<Autoregressive>> Create(
      const AutoregressiveOptions& options, Rng& rng);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  // maf / iaf (kAffineMaf), else "<transform>_maf" / "<transform>_iaf"
  // (spline_maf, ...).
  std::string name() const override;
  const Made& made() const { return *made_; }
  const AutoregressiveOptions& options() const { return o_; }

 private:
  Autoregressive(const AutoregressiveOptions& options,
                 std::shared_ptr<Made> made);
  Tensor Params(const Tensor& v, const Tensor& context) const;
  // u = tau(v; theta(v)): one pass.
  FlowResult OnePass(const Tensor& v, const Tensor& context) const;
  // u = tau(v; theta(v)) solved for v: D passes.
  FlowResult SequentialPasses(const Tensor& u, const Tensor& context) const;
  FlowResult Transform(const Tensor& in, const Tensor& params,
                       bool inverse) const;

  AutoregressiveOptions o_;
  std::shared_ptr<Made> made_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_AUTOREGRESSIVE_H_
