// Continuous adjoint (Chen et al. 2018) as one tape op; see ode/solve.h.
#include "ode/adjoint.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::ode::internal {
namespace {
using State = std::vector<double>;

// Everything the backward rule needs. Kept alive by the tape: a pinned
// aliasing pointer to `anchor` owns it, and is dropped when the tape is reset
// or rewound past the op.
struct AdjointContext {
  flowtape::internal::Storage anchor{1};
  OdeFn f;
  std::vector<Tensor> params;
  std::vector<double> times;
  std::vector<State> ys;  // forward solution at `times`
  Shape shape;
  OdeOptions options;
  std::shared_ptr<OdeStats> stats;
};

// d/dt [y, a, g] = [f, -a' df/dy, -a' df/dtheta], one f + one VJP.
void AugmentedField(const AdjointContext& c, double t, const State& s,
                    State& ds) {
  const int64_t n = c.shape.numel();
  TapeScope scope;
  EnableGradScope grad_on;
  Tensor y = Tensor::FromVector(c.shape, State(s.begin(), s.begin() + n));
  y.set_requires_grad(true);
  Tensor a =
      Tensor::FromVector(c.shape, State(s.begin() + n, s.begin() + 2 * n));
  Tensor fy = c.f(t, y);
  FT_CHECK(fy.shape() == c.shape, "ode: f(t, y) has shape ",
           fy.shape().ToString(), ", y has ", c.shape.ToString());
  std::vector<Tensor> inputs{y};
  inputs.insert(inputs.end(), c.params.begin(), c.params.end());
  std::vector<Tensor> g = Grad({fy}, inputs, {a});
  std::copy(fy.data(), fy.data() + n, ds.begin());
  int64_t off = n;
  for (const Tensor& gi : g) {
    const double* p = gi.data();
    for (int64_t i = 0; i < gi.numel(); ++i) ds[off + i] = -p[i];
    off += gi.numel();
  }
}

void AdjointBackward(const OpContext& ctx, const Tensor& gout, Tensor* gin) {
  auto& c = *reinterpret_cast<AdjointContext*>(ctx.iaux()[0]);
  const int64_t T = static_cast<int64_t>(c.times.size());
  const int64_t n = c.shape.numel();
  int64_t num_p = 0;
  for (const Tensor& p : c.params) num_p += p.numel();
  const double* go = gout.data();  // [T, n]

  State s(2 * n + num_p, 0.0);
  std::copy(c.ys[T - 1].begin(), c.ys[T - 1].end(), s.begin());
  std::copy(go + (T - 1) * n, go + T * n, s.begin() + n);
  State final_state = s;
  if (T > 1) {
    std::vector<double> rev(c.times.rbegin(), c.times.rend());
    SolverOptions o = c.options;
    if (c.options.adjoint_rtol > 0) o.rtol = c.options.adjoint_rtol;
    if (c.options.adjoint_atol > 0) o.atol = c.options.adjoint_atol;
    o.error_control_size = c.options.seminorm ? 2 * n : 0;
    auto field = [&c](double t, const State& x, State& dx) {
      AugmentedField(c, t, x, dx);
    };
    // At reversed index i (forward index j = T-1-i): reset y, jump a.
    auto hook = [&](int64_t i, double, State& x) {
      const int64_t j = T - 1 - i;
      std::copy(c.ys[j].begin(), c.ys[j].end(), x.begin());
      for (int64_t k = 0; k < n; ++k) x[n + k] += go[j * n + k];
      if (j == 0) final_state = x;
    };
    auto r = Integrate(field, s, rev, o, &c.stats->backward, nullptr, hook);
    if (!r.ok()) {
      c.stats->backward_status = r.status();
      std::fill(final_state.begin(), final_state.end(),
                std::numeric_limits<double>::quiet_NaN());
    }
  }
  if (ctx.node->inputs[0]->requires_grad)
    gin[0] = Tensor::FromVector(
        c.shape, State(final_state.begin() + n, final_state.begin() + 2 * n));
  int64_t off = 2 * n;
  for (size_t k = 0; k < c.params.size(); ++k) {
    const Tensor& p = c.params[k];
    if (ctx.node->inputs[k + 1]->requires_grad)
      gin[k + 1] = Tensor::FromVector(
          p.shape(), State(final_state.begin() + off,
                           final_state.begin() + off + p.numel()));
    off += p.numel();
  }
}

}  // namespace

absl::StatusOr<OdeSolution> AdjointSolve(const OdeFn& f, const Tensor& y0,
                                         const std::vector<double>& times,
                                         const std::vector<Tensor>& params,
                                         const OdeOptions& options) {
  auto c = std::make_shared<AdjointContext>();
  c->stats = std::make_shared<OdeStats>();
  auto ys = Integrate(ValueField(f, y0.shape()), y0.ToVector(), times, options,
                      &c->stats->forward);
  if (!ys.ok()) return ys.status();
  c->f = f;
  c->params = params;
  c->times = times;
  c->ys = std::move(*ys);
  c->shape = y0.shape();
  c->options = options;

  const int64_t T = static_cast<int64_t>(times.size()), n = y0.numel();
  Tensor out = flowtape::internal::NewOutput({T, n}, /*record=*/true);
  double* po = const_cast<double*>(out.data());
  for (int64_t i = 0; i < T; ++i)
    std::copy(c->ys[i].begin(), c->ys[i].end(), po + i * n);
  Tape::Get().Pin(std::shared_ptr<flowtape::internal::Storage>(c, &c->anchor));
  std::vector<Tensor> inputs{y0};
  inputs.insert(inputs.end(), params.begin(), params.end());
  out = flowtape::internal::RecordN(
      out, true, "ode_adjoint", inputs, AdjointBackward,
      OpAux{{}, {reinterpret_cast<int64_t>(c.get())}});

  OdeSolution sol{{}, c->stats};
  for (int64_t i = 0; i < T; ++i)
    sol.ys.push_back(Reshape(Narrow(out, 0, i, 1), y0.shape().dims()));
  return sol;
}

}  // namespace flowtape::ode::internal
