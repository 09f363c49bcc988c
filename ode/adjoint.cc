// Continuous adjoint (Chen et al. 2018) as one tape op; see ode/solve.h.
#include "ode/adjoint.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"

namespace flowtape::ode::internal {
namespace {

// Everything the backward rule needs, saved with the op (Op::SaveObject):
// the tape keeps it alive until it is reset or rewound past the op.
template <typename T>
struct AdjointContext {
  using State = std::vector<T>;
  OdeFn f;
  std::vector<Tensor> params;
  // derived[k]: the j whose params[j] is computed from params[k] (or is the
  // same tensor, listed later); `order`: indices, derived params first.
  std::vector<std::vector<int>> derived;
  std::vector<int> order;
  std::vector<double> times;
  std::vector<State> ys;  // forward solution at `times`
  Shape shape;
  OdeOptions options;
};

// d/dt [y, a, g] = [f, -a' df/dy, -a' df/dtheta], one f + one VJP.
template <typename T>
void AugmentedField(const AdjointContext<T>& c, double t,
                    const std::vector<T>& s, std::vector<T>& ds) {
  const int64_t n = c.shape.numel();
  TapeScope scope;
  EnableGradScope grad_on;
  Tensor y = StateTensor(c.shape, s);
  y.set_requires_grad(true);
  Tensor a = StateTensor(c.shape, s, n);
  Tensor fy = c.f(t, y);
  FT_CHECK(fy.shape() == c.shape && fy.dtype() == kDTypeOf<T>,
           "ode: f(t, y) is ", DTypeName(fy.dtype()), " ",
           fy.shape().ToString(), ", y is ", DTypeName(kDTypeOf<T>), " ",
           c.shape.ToString());
  std::vector<Tensor> inputs{y};
  inputs.insert(inputs.end(), c.params.begin(), c.params.end());
  std::vector<Tensor> g = Grad({fy}, inputs, {a});
  const T* pf = fy.data<T>();
  std::copy(pf, pf + n, ds.begin());
  int64_t off = n;
  for (const Tensor& gi : g) {
    const T* p = gi.data<T>();
    for (int64_t i = 0; i < gi.numel(); ++i) ds[off + i] = -p[i];
    off += gi.numel();
  }
}

template <typename T>
void AdjointBackward(const OpContext& ctx, const Tensor& gout, Tensor* gin) {
  using State = std::vector<T>;
  // The sweep records backward rules only under create_graph; the gradients
  // built here are constants, so a second derivative would silently be zero.
  FT_CHECK(!Tape::Get().grad_enabled(),
           "ode adjoint: create_graph through the adjoint is unsupported; use "
           "Gradient::kDiscretize");
  const auto& c = ctx.saved_object<AdjointContext<T>>();
  const int64_t num_t = static_cast<int64_t>(c.times.size());
  const int64_t n = c.shape.numel();
  int64_t num_p = 0;
  for (const Tensor& p : c.params) num_p += p.numel();
  const T* go = gout.data<T>();  // [num_t, n]

  State s(2 * n + num_p, T{0});
  std::copy(c.ys[num_t - 1].begin(), c.ys[num_t - 1].end(), s.begin());
  std::copy(go + (num_t - 1) * n, go + num_t * n, s.begin() + n);
  State final_state = s;
  if (num_t > 1) {
    std::vector<double> rev(c.times.rbegin(), c.times.rend());
    SolverOptions o = c.options;
    if (c.options.adjoint_rtol > 0) o.rtol = c.options.adjoint_rtol;
    if (c.options.adjoint_atol > 0) o.atol = c.options.adjoint_atol;
    o.error_control_size = c.options.seminorm ? 2 * n : 0;
    VectorField<T> field = [&c](double t, const State& x, State& dx) {
      AugmentedField(c, t, x, dx);
    };
    // At reversed index i (forward index j = num_t-1-i): reset y, jump a.
    ObservationHook<T> hook = [&](int64_t i, double, State& x) {
      const int64_t j = num_t - 1 - i;
      std::copy(c.ys[j].begin(), c.ys[j].end(), x.begin());
      for (int64_t k = 0; k < n; ++k) x[n + k] += go[j * n + k];
      if (j == 0) final_state = x;
    };
    SolverCounters counters;
    auto r = Integrate<T>(field, s, rev, o, &counters, nullptr, hook);
    if (c.options.stats != nullptr)
      c.options.stats->AddBackward(counters, r.status());
    if (!r.ok())
      std::fill(final_state.begin(), final_state.end(),
                std::numeric_limits<T>::quiet_NaN());
  }
  if (ctx.needs_grad(0)) gin[0] = StateTensor(c.shape, final_state, n);
  std::vector<Tensor> g;
  size_t off = 2 * n;
  for (const Tensor& p : c.params) {
    g.push_back(StateTensor(p.shape(), final_state, off));
    off += p.numel();
  }
  // The VJPs differentiate f through the whole tape, so g[k] also holds the
  // paths through listed params computed from params[k], which the tape adds
  // again when it carries g[j] on to params[k]. Keep only the partial:
  //   g_k -= sum_(j derived from k) (d params[j] / d params[k])' g_j,
  // in c.order (derived params first), so every g_j used is already a
  // partial.
  for (int k : c.order) {
    if (c.derived[k].empty()) continue;
    std::vector<Tensor> outs, seeds;
    for (int j : c.derived[k]) {
      outs.push_back(c.params[j]);
      seeds.push_back(g[j]);
    }
    g[k] = g[k] - Grad(outs, {c.params[k]}, seeds)[0];
  }
  for (size_t k = 0; k < c.params.size(); ++k)
    if (ctx.needs_grad(static_cast<int>(k) + 1)) gin[k + 1] = g[k];
}

// Fills c.derived and c.order from which params are computed from which
// (DependsOn, autodiff/grad.h). Two listings of one tensor depend on each
// other: the later one counts as derived. A param derived from another
// depends on strictly more of the listed params, so ordering by that count
// (ties: the later listing first) puts every derived param first.
template <typename T>
void FindDerivedParams(AdjointContext<T>& c) {
  const int num = static_cast<int>(c.params.size());
  std::vector<std::vector<bool>> dep(num);  // dep[j][k]: params[j] from [k]
  std::vector<int> count(num, 0);
  for (int j = 0; j < num; ++j) {
    dep[j] = DependsOn(c.params[j], c.params);
    count[j] = static_cast<int>(std::count(dep[j].begin(), dep[j].end(), true));
  }
  c.derived.assign(num, {});
  for (int k = 0; k < num; ++k)
    for (int j = 0; j < num; ++j)
      if (j != k && dep[j][k] && (!dep[k][j] || k < j))
        c.derived[k].push_back(j);
  c.order.resize(num);
  for (int j = 0; j < num; ++j) c.order[j] = j;
  std::sort(c.order.begin(), c.order.end(), [&](int a, int b) {
    return count[a] != count[b] ? count[a] > count[b] : a > b;
  });
}

}  // namespace

template <typename T>
absl::StatusOr<OdeSolution> AdjointSolve(const OdeFn& f, const Tensor& y0,
                                         const std::vector<double>& times,
                                         const std::vector<Tensor>& params,
                                         const OdeOptions& options) {
  auto c = std::make_shared<AdjointContext<T>>();
  OdeSolution sol;
  FT_ASSIGN_OR_RETURN(
      c->ys, Integrate<T>(ValueField<T>(f, y0.shape()), TensorState<T>(y0),
                          times, options, &sol.forward));
  c->f = f;
  c->params = params;
  FindDerivedParams(*c);
  c->times = times;
  c->shape = y0.shape();
  c->options = options;

  const int64_t num_t = static_cast<int64_t>(times.size()), n = y0.numel();
  std::vector<Tensor> inputs{y0};
  inputs.insert(inputs.end(), params.begin(), params.end());
  // Recorded whenever an input needs grads (else a constant solution).
  Op op("ode_adjoint", inputs);
  Tensor out = op.NewOutput({num_t, n});
  T* po = out.mutable_data<T>();
  for (int64_t i = 0; i < num_t; ++i)
    std::copy(c->ys[i].begin(), c->ys[i].end(), po + i * n);
  op.SaveObject(std::shared_ptr<const AdjointContext<T>>(c));
  out = op.Finish(out, AdjointBackward<T>);

  for (int64_t i = 0; i < num_t; ++i)
    sol.ys.push_back(Reshape(Narrow(out, 0, i, 1), y0.shape().dims()));
  return sol;
}

template absl::StatusOr<OdeSolution> AdjointSolve<float>(
    const OdeFn&, const Tensor&, const std::vector<double>&,
    const std::vector<Tensor>&, const OdeOptions&);
template absl::StatusOr<OdeSolution> AdjointSolve<double>(
    const OdeFn&, const Tensor&, const std::vector<double>&,
    const std::vector<Tensor>&, const OdeOptions&);

}  // namespace flowtape::ode::internal
