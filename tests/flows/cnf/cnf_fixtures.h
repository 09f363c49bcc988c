// Fixtures shared by the CNF tests.
//   LinearDynamics(A): f(t, z) = z A' with A a learnable parameter;
//     autonomous, so both call forms ignore t (and the context). Exact
//     answers: z(T) = expm(A T) x, logdet = T tr A.
//   ConcatSquashRk4(rng, g, context_dim): a small FFJORD (ConcatSquash 6
//     hidden, tanh) on 2-D data, fixed-step rk4 (h = 0.05), gradient mode g.
//   MakeCnf(dynamics, options): Cnf::Create that must succeed.
#ifndef FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_
#define FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_

#include <memory>
#include <utility>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"

namespace flowtape::flows::cnf::testing_cnf {

using Mat = RowMatrix;

class LinearDynamics : public CnfDynamics {
 public:
  explicit LinearDynamics(const Mat& a) {
    a_ = RegisterParameter("a", FromMatrix(a));
  }
  Tensor operator()(double, const Tensor& z) const override {
    return MatMulT(z, a_, false, true);
  }
  Tensor operator()(const Tensor&, const Tensor& z,
                    const Tensor&) const override {
    return MatMulT(z, a_, false, true);
  }
  int64_t dim() const override { return a_.dim(0); }

 private:
  Tensor a_;
};

inline std::shared_ptr<Cnf> MakeCnf(std::shared_ptr<CnfDynamics> dynamics,
                                    const CnfOptions& options) {
  auto cnf = Cnf::Create(std::move(dynamics), options);
  FT_CHECK(cnf.ok(), "test cnf: ", cnf.status().ToString());
  return *cnf;
}

inline std::shared_ptr<Cnf> ConcatSquashRk4(Rng& rng, ode::Gradient g,
                                            int64_t context_dim = 0) {
  CnfOptions o;
  o.ode.method = ode::Method::kRk4;
  o.ode.step_size = 0.05;
  o.ode.gradient = g;
  return MakeCnf(
      ConcatSquashNet::Create(2, {6}, nn::Activation::kTanh, rng, context_dim)
          .value(),
      o);
}

}  // namespace flowtape::flows::cnf::testing_cnf

#endif  // FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_
