#include "flows/monotone_inverse.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {

constexpr int kMaxDoublings = 128;
constexpr int kMaxIterations = 300;
constexpr double kTol = 1e-15;

// Roots of f(v; params) = u per entry, in float64; NaN where it fails, with
// the first failure in *status.
std::vector<double> Roots(const std::string& name, const MonotoneMap& f,
                          const Tensor& u_in, const Tensor& params_in,
                          absl::Status* status) {
  NoGradScope no_grad;
  const std::vector<double> u = u_in.ToVector();
  const int64_t n = u.size(), k = u_in.dim(1);
  // Every entry is its own map: evaluate the entries still being solved as
  // a batch [m, 1] with their parameters [m, 1, P].
  const Tensor params =
      Reshape(Cast(params_in, kFloat64), {n, 1, params_in.dim(2)});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto eval = [&](const std::vector<char>& which, const std::vector<double>& v,
                  std::vector<double>* value, std::vector<double>* logd) {
    std::vector<int64_t> index;
    std::vector<double> vs;
    for (int64_t i = 0; i < n; ++i)
      if (which[i]) {
        index.push_back(i);
        vs.push_back(v[i]);
      }
    value->assign(n, nan);
    if (logd != nullptr) logd->assign(n, nan);
    if (index.empty()) return;
    const int64_t m = index.size();
    MonotoneEval e =
        f(Tensor::FromVector({m, 1}, vs), IndexSelect(params, 0, index));
    const std::vector<double> fv = e.value.ToVector(),
                              fd = e.logderiv.ToVector();
    for (int64_t j = 0; j < m; ++j) {
      (*value)[index[j]] = fv[j];
      if (logd != nullptr) (*logd)[index[j]] = fd[j];
    }
  };
  std::vector<double> lo(n, -1.0), hi(n, 1.0), root(n, 0.0);
  std::vector<char> active(n, 1);
  int64_t remaining = n;
  auto fail = [&](int64_t i, const std::string& why) {
    if (status->ok())
      *status = absl::InvalidArgumentError(
          absl::StrCat(name, ".inverse: entry (", i / k, ", ", i % k,
                       "), u = ", u[i], ": ", why));
    root[i] = nan;
    active[i] = 0;
    --remaining;
  };
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(u[i])) fail(i, "the input is not finite");

  // Bracket: f(lo) <= u <= f(hi).
  std::vector<double> flo, fhi;
  std::vector<char> bracketed(n, 0);
  for (int it = 0; it <= kMaxDoublings && remaining > 0; ++it) {
    std::vector<char> open(n);
    for (int64_t i = 0; i < n; ++i) open[i] = active[i] && !bracketed[i];
    eval(open, lo, &flo, nullptr);
    eval(open, hi, &fhi, nullptr);
    bool all = true;
    for (int64_t i = 0; i < n; ++i) {
      if (!active[i] || bracketed[i]) continue;
      if (std::isnan(flo[i]) || std::isnan(fhi[i])) {
        fail(i, absl::StrCat("f is NaN on [", lo[i], ", ", hi[i], "]"));
        continue;
      }
      const bool ok_lo = flo[i] <= u[i], ok_hi = fhi[i] >= u[i];
      if (ok_lo && ok_hi) {
        bracketed[i] = 1;
        continue;
      }
      all = false;
      if (it == kMaxDoublings) {
        fail(i, absl::StrCat("no bracket within |v| < 2^", kMaxDoublings));
        continue;
      }
      if (!ok_lo) {
        hi[i] = lo[i];
        lo[i] *= 2;
      }
      if (!ok_hi) {
        lo[i] = hi[i];
        hi[i] *= 2;
      }
    }
    if (all) break;
  }

  // Safeguarded Newton inside the brackets.
  std::vector<double> v(n), fv, logd;
  for (int64_t i = 0; i < n; ++i) v[i] = active[i] ? 0.5 * (lo[i] + hi[i]) : 0;
  for (int it = 0; it < kMaxIterations && remaining > 0; ++it) {
    eval(active, v, &fv, &logd);
    for (int64_t i = 0; i < n; ++i) {
      if (!active[i]) continue;
      const double r = fv[i] - u[i];
      if (std::isnan(r) || std::isnan(logd[i])) {
        fail(i, absl::StrCat("f or log f' is NaN at v = ", v[i]));
        continue;
      }
      if (r == 0) {
        root[i] = v[i];
        active[i] = 0;
        --remaining;
        continue;
      }
      (r > 0 ? hi[i] : lo[i]) = v[i];
      double next = v[i] - r * std::exp(-logd[i]);
      if (!(next > lo[i] && next < hi[i])) next = 0.5 * (lo[i] + hi[i]);
      const double tol = kTol * (1 + std::fabs(v[i]));
      if (std::fabs(next - v[i]) <= tol || hi[i] - lo[i] <= 2 * tol) {
        root[i] = next;
        active[i] = 0;
        --remaining;
      }
      v[i] = next;
    }
  }
  for (int64_t i = 0; i < n; ++i)
    if (active[i])
      fail(i, absl::StrCat("no convergence in ", kMaxIterations,
                           " iterations (bracket [", lo[i], ", ", hi[i], "])"));
  return root;
}

}  // namespace

MonotoneResult ApplyMonotone(const std::string& name, const MonotoneMap& f,
                             const Tensor& in, const Tensor& params,
                             bool inverse) {
  FT_CHECK(in.rank() == 2 && params.rank() == 3 && params.dim(0) == in.dim(0) &&
               params.dim(1) == in.dim(1),
           name, ": input ", in.shape().ToString(), " with params ",
           params.shape().ToString());
  if (!inverse) {
    MonotoneEval e = f(in, params);
    return {e.value, e.logderiv, absl::OkStatus()};
  }
  MonotoneResult r;
  const std::vector<double> roots = Roots(name, f, in, params, &r.status);
  auto newton = [&](const Tensor& x) {
    MonotoneEval e = f(x, params);
    return x - (e.value - in) * Exp(-e.logderiv);
  };
  r.value = newton(newton(Tensor::FromVector(in.shape(), roots, in.dtype())));
  r.logabsdet = -f(r.value, params).logderiv;
  if (!r.status.ok()) {
    // The value is NaN where the root is; so is the log-det, even where the
    // map's derivative does not depend on v (Bernstein's tails).
    std::vector<double> failed(roots.size());
    for (size_t i = 0; i < roots.size(); ++i) failed[i] = std::isnan(roots[i]);
    const Tensor mask = Tensor::FromVector(in.shape(), failed, in.dtype());
    r.logabsdet =
        Where(mask, Tensor::Scalar(std::nan(""), in.dtype()), r.logabsdet);
  }
  return r;
}

}  // namespace flowtape::flows
