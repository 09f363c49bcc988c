// Neural spline flows (Durkan et al. 2019): rational-quadratic splines
// (rq_spline.h) whose 3K-1 parameters per dimension come from a conditioner.
//
// SplineCoupling: x = [x_a | x_b] (x_a the identity half, D/2 numbers),
//   z_a = x_a,  z_b = RQ(x_b; theta),  theta = MLP([x_a, context])
//   logdet = sum_b log|dRQ/dx_b|;  inverse: x_b = RQ^-1(z_b; MLP([z_a, c])).
//   parity 0: x_a is the first D/2 dimensions; parity 1: the last D/2.
//   The MLP's last layer starts at zero (identity flow at initialisation).
// SplineAutoregressive: MAF-style, theta_i = MADE(x_<i, context): density in
//   one pass, sampling in D passes (inverted = true swaps the two, IAF-style).
// Conventions of flow.h: Forward is data -> base, logdet = log|det dz/dx|.
#ifndef FLOWTAPE_FLOWS_SPLINE_H_
#define FLOWTAPE_FLOWS_SPLINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nn/layers.h"
#include "flows/autoregressive.h"
#include "flows/flow.h"
#include "flows/made.h"
#include "flows/rq_spline.h"

namespace flowtape::flows {

struct SplineCouplingOptions {
  int64_t dim = 2;
  std::vector<int64_t> hidden = {64, 64};
  int64_t context_dim = 0;
  int parity = 0;
  nn::Activation activation = nn::Activation::kRelu;
  RqSplineOptions spline;
};

class SplineCoupling : public Flow {
 public:
  // InvalidArgument unless dim >= 2, parity is 0 or 1, context_dim >= 0,
  // every hidden size >= 1 and the spline options are valid (rq_spline.h).
  static absl::StatusOr<std::shared_ptr<SplineCoupling>> Create(
      const SplineCouplingOptions& options, Rng& rng);
  // Aborts on invalid options (use Create for options from users).
  SplineCoupling(const SplineCouplingOptions& options, Rng& rng);
  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  std::string name() const override { return "spline_coupling"; }

 private:
  FlowResult Apply(const Tensor& in, const Tensor& context, bool inverse) const;

  SplineCouplingOptions options_;
  int64_t id_start_, tr_start_, id_size_, tr_size_;
  std::shared_ptr<nn::MLP> net_;
};

class SplineAutoregressive : public MadeAutoregressive {
 public:
  // made.params_per_dim is set to spline.num_params(). Create returns
  // InvalidArgument for invalid MADE (made.h) or spline options; the
  // constructor aborts on them.
  static absl::StatusOr<std::shared_ptr<SplineAutoregressive>> Create(
      const MadeOptions& made, const RqSplineOptions& spline, Rng& rng,
      bool inverted = false);
  SplineAutoregressive(MadeOptions made, const RqSplineOptions& spline,
                       Rng& rng, bool inverted = false);
  std::string name() const override {
    return inverted() ? "spline_iaf" : "spline_maf";
  }

 protected:
  FlowResult Transform(const Tensor& in, const Tensor& params,
                       bool inverse) const override;

 private:
  static MadeOptions WithParams(MadeOptions o, const RqSplineOptions& s) {
    o.params_per_dim = s.num_params();
    return o;
  }
  RqSplineOptions spline_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SPLINE_H_
