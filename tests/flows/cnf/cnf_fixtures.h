// Fixtures shared by the CNF tests.
//   LinearDynamics(A): f(t, z) = z A' with A a learnable parameter;
//     autonomous, so both call forms ignore t (and the context). Exact
//     answers: z(T) = expm(A T) x, logdet = T tr A.
//   ConcatSquashRk4(rng, g, context_dim): a small FFJORD (ConcatSquash 6
//     hidden, tanh) on 2-D data, fixed-step rk4 (h = 0.05), gradient mode g.
#ifndef FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_
#define FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_

#include <memory>
#include <vector>

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

inline std::shared_ptr<Flow> ConcatSquashRk4(Rng& rng, ode::Gradient g,
                                             int64_t context_dim = 0) {
  CnfOptions o;
  o.ode.method = ode::Method::kRk4;
  o.ode.step_size = 0.05;
  o.ode.gradient = g;
  return std::make_shared<Cnf>(
      std::make_shared<ConcatSquashNet>(
          2, std::vector<int64_t>{6}, nn::Activation::kTanh, rng, context_dim),
      o);
}

}  // namespace flowtape::flows::cnf::testing_cnf

#endif  // FLOWTAPE_TESTS_FLOWS_CNF_CNF_FIXTURES_H_
