#include "flows/sylvester.h"

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "flows/householder.h"

namespace flowtape::flows {
namespace {

// Root of y + c tanh(w y + s) = t with c w > -1 (g strictly increasing),
// inside the bracket |y - t| <= |c|; safeguarded Newton.
double SolveCoordinate(double t, double c, double w, double s) {
  double lo = t - std::fabs(c), hi = t + std::fabs(c);
  double y = t - c * std::tanh(w * t + s);
  if (!(y > lo && y < hi)) y = 0.5 * (lo + hi);
  for (int it = 0; it < 200; ++it) {
    const double th = std::tanh(w * y + s);
    const double g = y + c * th - t;
    if (g == 0) break;
    (g > 0 ? hi : lo) = y;
    double next = y - g / (1 + c * w * (1 - th * th));
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    const bool done = std::fabs(next - y) <= 1e-16 * (1 + std::fabs(y));
    y = next;
    if (done) break;
  }
  return y;
}

Tensor Entry(const Tensor& a, int64_t i, int64_t j) {  // [1, 1]
  return Narrow(Narrow(a, 0, i, 1), 1, j, 1);
}

// One back-substitution Newton sweep on Q^T x = y + R tanh(R~ y + b), from
// y0 [N, M] and b [1 or N, M]; returns y and u = tanh(R~ y + b), [N, M].
std::pair<Tensor, Tensor> NewtonSweep(const Tensor& y0, const Tensor& qx,
                                      const Tensor& r, const Tensor& rt,
                                      const Tensor& b) {
  const int64_t m = qx.dim(1);
  std::vector<Tensor> y(m), u(m);
  for (int64_t i = m - 1; i >= 0; --i) {
    Tensor s = Narrow(b, 1, i, 1);
    Tensor t = Narrow(qx, 1, i, 1);
    if (i + 1 < m) {
      std::vector<Tensor> later_y(y.begin() + i + 1, y.end());
      std::vector<Tensor> later_u(u.begin() + i + 1, u.end());
      Tensor rt_row = Narrow(Narrow(rt, 0, i, 1), 1, i + 1, m - i - 1);
      Tensor r_row = Narrow(Narrow(r, 0, i, 1), 1, i + 1, m - i - 1);
      s = s + MatMulT(Concat(later_y, 1), rt_row, false, true);
      t = t - MatMulT(Concat(later_u, 1), r_row, false, true);
    }
    Tensor c = Entry(r, i, i), w = Entry(rt, i, i);
    Tensor yi = Narrow(y0, 1, i, 1);
    Tensor th = Tanh(w * yi + s);
    yi = yi - (yi + c * th - t) / (1.0 + c * w * (1.0 - Square(th)));
    y[i] = yi;
    u[i] = Tanh(w * yi + s);
  }
  return {Concat(y, 1), Concat(u, 1)};
}

}  // namespace

absl::Status SylvesterOptions::Validate() const {
  const SylvesterOptions& o = *this;
  if (o.dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("sylvester: dim = ", o.dim, " must be >= 1"));
  if (o.q == SylvesterQ::kOrthogonal && (o.m < 0 || o.m > o.dim))
    return absl::InvalidArgumentError(absl::StrCat(
        "sylvester: m = ", o.m, " must be in 1..dim = ", o.dim, " (0: dim)"));
  if (o.q != SylvesterQ::kOrthogonal && o.m != 0 && o.m != o.dim)
    return absl::InvalidArgumentError(
        absl::StrCat("sylvester: m = ", o.m, " != dim = ", o.dim,
                     " (only orthogonal Sylvester flows have M < D)"));
  if (o.context_dim < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "sylvester: context_dim = ", o.context_dim, " must be >= 0"));
  if (o.q == SylvesterQ::kHouseholder && o.reflections < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "sylvester: reflections = ", o.reflections, " must be >= 0"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Sylvester>> Sylvester::Create(
    const SylvesterOptions& o, Rng& rng) {
  FT_RETURN_IF_ERROR(o.Validate());
  return std::shared_ptr<Sylvester>(new Sylvester(o, rng));
}

Sylvester::Sylvester(const SylvesterOptions& o, Rng& rng) : o_(o) {
  const int64_t d = o.dim;
  if (o.q != SylvesterQ::kOrthogonal || o.m == 0) o_.m = d;
  const int64_t m = o_.m;
  switch (o.q) {
    case SylvesterQ::kOrthogonal:
      q_raw_ = RegisterParameter("v", Tensor::Randn({d, m}, rng));
      break;
    case SylvesterQ::kHouseholder:
      o_.reflections = o.reflections > 0 ? o.reflections : d;
      q_raw_ = RegisterParameter("v", Tensor::Randn({o_.reflections, d}, rng));
      break;
    case SylvesterQ::kTriangular: {
      Tensor q = Tensor::Zeros({d, d});
      for (int64_t i = 0; i < d; ++i)
        q.mutable_data<double>()[i * d + (o.reverse ? d - 1 - i : i)] = 1;
      q_raw_ = RegisterBuffer("q", q);
      break;
    }
  }
  Tensor mask = Tensor::Zeros({m, m});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = i + 1; j < m; ++j)
      mask.mutable_data<double>()[i * m + j] = 1;
  upper_mask_ = RegisterBuffer("upper_mask", mask);
  const double s = 1.0 / std::sqrt(static_cast<double>(m));
  r_ = RegisterParameter("r", (Tensor::Randn({m, m}, rng) * s).Detach());
  rt_ = RegisterParameter("r_tilde", (Tensor::Randn({m, m}, rng) * s).Detach());
  b_ = RegisterParameter("b", Tensor::Zeros({m}));
  if (o.context_dim > 0)
    w_context_ =
        RegisterParameter("context_weight", Tensor::Zeros({o.context_dim, m}));
}

absl::StatusOr<std::shared_ptr<Sylvester>> Sylvester::Create(
    const Tensor& q, const Tensor& r, const Tensor& r_tilde, const Tensor& b) {
  if (q.rank() != 2 || q.dim(1) < 1 || q.dim(0) < q.dim(1))
    return absl::InvalidArgumentError(absl::StrCat(
        "sylvester: Q ", q.shape().ToString(), " must be [D, M], 1 <= M <= D"));
  const int64_t d = q.dim(0), m = q.dim(1);
  if (r.shape() != Shape({m, m}) || r_tilde.shape() != Shape({m, m}) ||
      b.shape() != Shape({m}))
    return absl::InvalidArgumentError(absl::StrCat(
        "sylvester: R ", r.shape().ToString(), ", R~ ",
        r_tilde.shape().ToString(), " and b ", b.shape().ToString(),
        " must be [M, M], [M, M] and [M] with M = ", m));
  for (const Tensor* t : {&q, &r, &r_tilde, &b})
    for (int64_t i = 0; i < t->numel(); ++i)
      if (!std::isfinite((*t)[i]))
        return absl::InvalidArgumentError(
            "sylvester: Q, R, R~ and b must be finite");
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += q[k * m + i] * q[k * m + j];
      if (std::fabs(dot - (i == j)) > 1e-10)
        return absl::InvalidArgumentError(
            absl::StrCat("sylvester: Q's columns are not orthonormal (Q^T Q [",
                         i, ",", j, "] = ", dot, ")"));
      if (j < i && (r[i * m + j] != 0 || r_tilde[i * m + j] != 0))
        return absl::InvalidArgumentError(absl::StrCat(
            "sylvester: R and R~ must be upper triangular (entry [", i, ",", j,
            "] is nonzero)"));
    }
  for (int64_t i = 0; i < m; ++i) {
    const double ri = r[i * m + i], rti = r_tilde[i * m + i];
    if (!(ri * rti > -1))
      return absl::InvalidArgumentError(absl::StrCat(
          "sylvester: R_mm R~_mm = ", ri * rti, " at m = ", i,
          " must be > -1 for the map to be invertible (van den Berg 2018)"));
    if (!(std::fabs(ri) < kMaxDiag && std::fabs(rti) < kMaxDiag))
      return absl::InvalidArgumentError(absl::StrCat(
          "sylvester: diagonal R_mm = ", ri, ", R~_mm = ", rti, " at m = ", i,
          " outside the parametrisation's range (-c, c), c = 1 - 2^-12"));
  }
  SylvesterOptions o;
  o.dim = d;
  o.m = m;
  Rng rng(0);
  std::shared_ptr<Sylvester> f(new Sylvester(o, rng));
  for (int64_t i = 0; i < q.numel(); ++i)
    f->q_raw_.mutable_data<double>()[i] = q[i];
  for (int64_t i = 0; i < m * m; ++i) {
    const bool diag = i / m == i % m;
    f->r_.mutable_data<double>()[i] = diag ? std::atanh(r[i] / kMaxDiag) : r[i];
    f->rt_.mutable_data<double>()[i] =
        diag ? std::atanh(r_tilde[i] / kMaxDiag) : r_tilde[i];
  }
  for (int64_t i = 0; i < m; ++i) f->b_.mutable_data<double>()[i] = b[i];
  return f;
}

Tensor Sylvester::Q() const {
  switch (o_.q) {
    case SylvesterQ::kOrthogonal:
      return Qr(q_raw_).q;
    case SylvesterQ::kHouseholder:
      return HouseholderProduct(q_raw_);
    case SylvesterQ::kTriangular:
      break;
  }
  return q_raw_;
}

Tensor Sylvester::Triangular(const Tensor& raw) const {
  const int64_t m = raw.dim(0);
  return raw * upper_mask_ +
         Tensor::Eye(m, raw.dtype()) * (kMaxDiag * Tanh(raw));
}

Tensor Sylvester::Bias(const Tensor& context, int64_t n) const {
  Tensor b = Reshape(b_, {1, o_.m});
  if (o_.context_dim == 0) return b;
  FT_CHECK(context.defined() && context.rank() == 2 && context.dim(0) == n &&
               context.dim(1) == o_.context_dim,
           "sylvester: context ",
           context.defined() ? context.shape().ToString() : "undefined",
           " vs [", n, ", ", o_.context_dim, "]");
  return b + MatMul(context, w_context_);
}

Tensor Sylvester::R() const { return Triangular(r_); }
Tensor Sylvester::RTilde() const { return Triangular(rt_); }

FlowResult Sylvester::Inverse(const Tensor& z, const Tensor& context,
                              Rng*) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == o_.dim, "sylvester.inverse: input ",
           z.shape().ToString(), " vs dimension ", o_.dim);
  Tensor q = Q(), r = R(), rt = RTilde();
  Tensor b = Bias(context, z.dim(0));
  Tensor u = Tanh(MatMulT(MatMul(z, q), rt, false, true) + b);  // [N, M]
  Tensor x = z + MatMulT(MatMulT(u, r, false, true), q, false, true);
  Tensor diag = Sum(r * rt * Tensor::Eye(o_.m, z.dtype()), 1);  // R_mm R~_mm
  return {x, Sum(Log1p((1.0 - Square(u)) * diag), 1)};
}

FlowResult Sylvester::Forward(const Tensor& x, const Tensor& context,
                              Rng*) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == o_.dim, "sylvester.forward: input ",
           x.shape().ToString(), " vs dimension ", o_.dim);
  const int64_t n = x.dim(0), m = o_.m;
  Tensor q = Q(), r = R(), rt = RTilde(), b = Bias(context, n);
  Tensor qx = MatMul(x, q);  // rows (Q^T x_n)^T
  // Exact back substitution on values (in double), coordinate by coordinate.
  const std::vector<double> vq = qx.ToVector(), vr = r.ToVector(),
                            vrt = rt.ToVector(), vb = b.ToVector();
  std::vector<double> y0(n * m), u(m);
  for (int64_t s = 0; s < n; ++s) {
    double* y = y0.data() + s * m;
    const double* bs = vb.data() + (b.dim(0) == 1 ? 0 : s * m);
    for (int64_t i = m - 1; i >= 0; --i) {
      double shift = bs[i], t = vq[s * m + i];
      for (int64_t j = i + 1; j < m; ++j) {
        shift += vrt[i * m + j] * y[j];
        t -= vr[i * m + j] * u[j];
      }
      const double c = vr[i * m + i], w = vrt[i * m + i];
      if (!std::isfinite(t) || !std::isfinite(shift) || !std::isfinite(c) ||
          !std::isfinite(w)) {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        FlowResult bad{Tensor::Full(x.shape(), nan, x.dtype()),
                       Tensor::Full({n}, nan, x.dtype())};
        bad.status = absl::InvalidArgumentError(absl::StrCat(
            "sylvester.forward: coordinate ", i, " of sample ", s,
            " has a non-finite equation (target ", t, ", shift ", shift,
            "): the back substitution needs finite values"));
        return bad;
      }
      y[i] = SolveCoordinate(t, c, w, shift);
      u[i] = std::tanh(w * y[i] + shift);
    }
  }
  // Two recorded sweeps: exact first and second derivatives of the root.
  Tensor y1 =
      NewtonSweep(Tensor::FromVector({n, m}, y0, x.dtype()), qx, r, rt, b)
          .first;
  Tensor uh = NewtonSweep(y1, qx, r, rt, b).second;
  Tensor z = x - MatMulT(MatMulT(uh, r, false, true), q, false, true);
  Tensor diag = Sum(r * rt * Tensor::Eye(m, x.dtype()), 1);
  return {z, -Sum(Log1p((1.0 - Square(uh)) * diag), 1)};
}

}  // namespace flowtape::flows
