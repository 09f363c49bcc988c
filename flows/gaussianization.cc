#include "flows/gaussianization.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "flows/householder.h"
#include "flows/monotone_inverse.h"
#include "flows/sequential.h"

namespace flowtape::flows {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(2 pi) / 2
constexpr int64_t kMaxComponents = 4096;

// log Phi(y) and log(Phi(y) / phi(y)) in float64: erfc where it does not
// underflow; below -20 the asymptotic series
//   Phi(y) / phi(y) = (1 / -y) sum_n (-1)^n (2n - 1)!! / y^(2n),
// whose log is formed without the cancellation of log Phi - log phi.
struct LogNdtrResult {
  double log_phi_cdf, log_ratio;
};
LogNdtrResult LogNdtrValue(double y) {
  const double log_pdf = -0.5 * y * y - kHalfLog2Pi;
  if (y > -20) {
    const double lp = y > 0 ? std::log1p(-0.5 * std::erfc(y * M_SQRT1_2))
                            : std::log(0.5 * std::erfc(-y * M_SQRT1_2));
    return {lp, lp - log_pdf};
  }
  const double inv = 1.0 / y / y;
  double term = 1, sum = 1;
  for (int n = 1; n < 200; ++n) {
    term *= -(2 * n - 1) * inv;
    sum += term;
    if (std::fabs(term) < 1e-17) break;
  }
  const double log_ratio = std::log(sum) - std::log(-y);
  return {log_pdf + log_ratio, log_ratio};
}

// Phi^-1(exp(l)) for l <= log(1/2): Newton on the concave, increasing
// g(y) = log Phi(y) - l, g' = phi / Phi (after the first step the iterates
// approach the root from the left, monotonically).
double NdtriExpLower(double l) {
  double y = l > -1 ? 0.0 : -std::sqrt(-2 * l);
  for (int it = 0; it < 100; ++it) {
    const LogNdtrResult r = LogNdtrValue(y);
    const double step = (r.log_phi_cdf - l) * std::exp(r.log_ratio);  // g/g'
    y -= step;
    if (std::fabs(step) <= 1e-15 * (1 + std::fabs(y))) break;
  }
  return y;
}

double NdtriExpValue(double l) {
  if (std::isnan(l) || l > 0) return std::numeric_limits<double>::quiet_NaN();
  if (l == 0) return std::numeric_limits<double>::infinity();
  if (l == -std::numeric_limits<double>::infinity()) return -HUGE_VAL;
  if (l <= -M_LN2) return NdtriExpLower(l);
  return -NdtriExpLower(std::log(-std::expm1(l)));  // Phi^-1(p) = -Phi^-1(1-p)
}

struct Marginal {
  Tensor z, logderiv;  // [N, D]
};

// The marginal map of gaussianization.h for x [N, D] with anchors and log
// bandwidths [D, K] or [N, D, K].
Marginal Gaussianize(GaussianizationKernel kernel, const Tensor& x,
                     const Tensor& mu, const Tensor& log_h) {
  const int64_t n = x.dim(0), d = x.dim(1), k = mu.dim(mu.rank() - 1);
  const double log_k = std::log(static_cast<double>(k));
  const Tensor u = (Reshape(x, {n, d, 1}) - mu) * Exp(-log_h);
  // Per kernel: log CDF, log survival function, log density of u.
  Tensor lo, hi, log_pdf;
  if (kernel == GaussianizationKernel::kLogistic) {
    lo = LogSigmoid(u);
    hi = LogSigmoid(-u);
    log_pdf = lo + hi;
  } else {
    lo = LogNdtr(u);
    hi = LogNdtr(-u);
    log_pdf = -0.5 * Square(u) - kHalfLog2Pi;
  }
  const Tensor log_f = LogSumExp(lo, 2) - log_k;                  // log F
  const Tensor log_g = LogSumExp(hi, 2) - log_k;                  // log (1 - F)
  const Tensor log_dens = LogSumExp(log_pdf - log_h, 2) - log_k;  // log F'
  // The branch of the smaller tail, chosen on values; the other branch is
  // evaluated at l = log(1/2) (z = 0) so that it stays finite.
  Tensor lower = Tensor::Empty({n, d}, x.dtype());
  VisitDType(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* f = log_f.data<T>();
    const T* g = log_g.data<T>();
    T* m = lower.mutable_data<T>();
    for (int64_t i = 0; i < n * d; ++i) m[i] = f[i] < g[i] ? T(1) : T(0);
  });
  const Tensor half = Tensor::Scalar(-M_LN2, x.dtype());
  const Tensor z = Where(lower, NdtriExp(Where(lower, log_f, half)),
                         -NdtriExp(Where(lower, half, log_g)));
  return {z, log_dens + 0.5 * Square(z) + kHalfLog2Pi};
}

// Silverman's rule, h = 0.9 sd K^(-1/5), as the kernel's scale (a logistic
// of scale s has standard deviation pi s / sqrt(3)).
double BandwidthFor(GaussianizationKernel kernel, double sd, int64_t k) {
  const double h = 0.9 * sd * std::pow(static_cast<double>(k), -0.2);
  return kernel == GaussianizationKernel::kLogistic ? std::sqrt(3.0) / M_PI * h
                                                    : h;
}

}  // namespace

Tensor LogNdtr(const Tensor& x) {
  return MapUnary(
      "log_ndtr", x,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        // d/dx log Phi = phi / Phi.
        const Tensor x = c.input(0);
        gin[0] = GradMul(g, Exp(-0.5 * Square(x) - kHalfLog2Pi - c.output()));
      },
      [](auto v) { return LogNdtrValue(static_cast<double>(v)).log_phi_cdf; });
}

Tensor NdtriExp(const Tensor& l) {
  return MapUnary(
      "ndtri_exp", l,
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        const Tensor y = c.output();
        gin[0] = GradMul(g, Exp(c.input(0) + 0.5 * Square(y) + kHalfLog2Pi));
      },
      [](auto v) { return NdtriExpValue(static_cast<double>(v)); });
}

absl::Status MarginalGaussianizationOptions::Validate() const {
  if (dim < 1 || components < 1 || components > kMaxComponents)
    return absl::InvalidArgumentError(absl::StrCat(
        "marginal_gaussianization: need dim >= 1 and 1 <= components <= ",
        kMaxComponents, ", got dim = ", dim, ", components = ", components));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<MarginalGaussianization>>
MarginalGaussianization::Create(const MarginalGaussianizationOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<MarginalGaussianization>(
      new MarginalGaussianization(options));
}

MarginalGaussianization::MarginalGaussianization(
    const MarginalGaussianizationOptions& o)
    : o_(o) {
  const int64_t d = o.dim, k = o.components;
  std::vector<double> mu(d * k), log_h(d * k);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < k; ++j) {
      mu[i * k + j] = NdtriExpValue(std::log((j + 0.5) / k));
      log_h[i * k + j] = std::log(BandwidthFor(o.kernel, 1.0, k));
    }
  mu_ = RegisterParameter("anchors", Tensor::FromVector({d, k}, mu));
  log_h_ =
      RegisterParameter("log_bandwidths", Tensor::FromVector({d, k}, log_h));
  initialized_ = RegisterBuffer("initialized", Tensor::Scalar(0.0));
}

void MarginalGaussianization::Initialize(const Tensor& x) const {
  const int64_t n = x.dim(0), d = o_.dim, k = o_.components;
  const std::vector<double> v = x.ToVector();
  Tensor mu = mu_, log_h = log_h_, flag = initialized_;  // shared storage
  VisitDType(mu.dtype(), [&](auto zero) {
    using T = decltype(zero);
    flag.mutable_data<T>()[0] = 1;
    std::vector<double> col(n);
    for (int64_t i = 0; i < d; ++i) {
      double mean = 0, sq = 0;
      for (int64_t r = 0; r < n; ++r) {
        col[r] = v[r * d + i];
        mean += col[r] / n;
      }
      for (double e : col) sq += (e - mean) * (e - mean);
      const double sd = std::max(std::sqrt(sq / std::max<int64_t>(n - 1, 1)),
                                 1e-6 * (1 + std::fabs(mean)));
      std::sort(col.begin(), col.end());
      for (int64_t j = 0; j < k; ++j) {
        const double pos = (j + 0.5) / k * (n - 1);
        const int64_t a = static_cast<int64_t>(std::floor(pos));
        const int64_t b = std::min(a + 1, n - 1);
        const double q = col[a] + (pos - a) * (col[b] - col[a]);
        mu.mutable_data<T>()[i * k + j] = static_cast<T>(q);
        log_h.mutable_data<T>()[i * k + j] =
            static_cast<T>(std::log(BandwidthFor(o_.kernel, sd, k)));
      }
    }
  });
}

FlowResult MarginalGaussianization::Forward(const Tensor& x, const Tensor&,
                                            Rng*) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == o_.dim, "marginal_gaussianization: x ",
           x.shape().ToString(), " for D = ", o_.dim);
  if (InInitializationPass() && !initialized() && x.dim(0) > 0) Initialize(x);
  Marginal m = Gaussianize(o_.kernel, x, mu_, log_h_);
  return {m.z, Sum(m.logderiv, 1)};
}

FlowResult MarginalGaussianization::Inverse(const Tensor& z, const Tensor&,
                                            Rng*) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == o_.dim, "marginal_gaussianization: z ",
           z.shape().ToString(), " for D = ", o_.dim);
  const int64_t n = z.dim(0), d = o_.dim, k = o_.components;
  const Tensor params = BroadcastTo(
      Reshape(Concat({mu_, log_h_}, 1), {1, d, 2 * k}), Shape{n, d, 2 * k});
  const GaussianizationKernel kernel = o_.kernel;
  const MonotoneMap f = [k, kernel](const Tensor& v, const Tensor& p) {
    Marginal m = Gaussianize(kernel, v, Narrow(p, 2, 0, k), Narrow(p, 2, k, k));
    return MonotoneEval{m.z, m.logderiv};
  };
  MonotoneResult r = ApplyMonotone(name(), f, z, params, /*inverse=*/true);
  FlowResult out(r.value, Sum(r.logabsdet, 1));
  out.status = r.status;
  return out;
}

absl::Status GaussianizationFlowOptions::Validate() const {
  if (dim < 1 || layers < 1 || layers > 4096 || components < 1 ||
      components > kMaxComponents)
    return absl::InvalidArgumentError(absl::StrCat(
        "gaussianization_flow: need dim >= 1, 1 <= layers <= 4096 and 1 <= "
        "components <= ",
        kMaxComponents, ", got dim = ", dim, ", layers = ", layers,
        ", components = ", components));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Flow>> GaussianizationFlow(
    const GaussianizationFlowOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  auto seq = std::make_shared<Sequential>();
  for (int64_t i = 0; i < options.layers; ++i) {
    if (i > 0) {
      FT_ASSIGN_OR_RETURN(auto rotation,
                          Householder::Create(options.dim, options.dim, rng));
      seq->Add(rotation);
    }
    FT_ASSIGN_OR_RETURN(auto marginal,
                        MarginalGaussianization::Create(
                            {options.dim, options.components, options.kernel}));
    seq->Add(marginal);
  }
  return std::shared_ptr<Flow>(seq);
}

}  // namespace flowtape::flows
