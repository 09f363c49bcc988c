#include "manifolds/volume_ratio.h"

#include <cmath>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::manifolds {

Eigen::MatrixXd AmbientJacobian(const TensorFn& f, const Eigen::VectorXd& x,
                                DType dtype) {
  const int64_t n = x.size();
  Tensor xt = FromRows(x.transpose(), dtype);
  TapeScope scope;
  Tensor jac = Jacobian(f, xt);
  FT_CHECK(jac.numel() == n * n, "AmbientJacobian: f must map [1, ", n,
           "] to [1, ", n, "], got ", jac.shape().ToString());
  return Rows(Reshape(jac, {n, n}));
}

double VolumeRatio(const Eigen::MatrixXd& f_jac, const Eigen::MatrixXd& tx,
                   const Eigen::MatrixXd& ty) {
  return std::abs((ty.transpose() * f_jac * tx).determinant());
}

double VolumeRatio(const Manifold& m, const TensorFn& f,
                   const Eigen::VectorXd& x, DType dtype) {
  Eigen::VectorXd y;
  {
    NoGradScope no_grad;
    y = Row(f(FromRows(x.transpose(), dtype)), 0);
  }
  return VolumeRatio(AmbientJacobian(f, x, dtype), m.TangentBasis(x),
                     m.TangentBasis(y));
}

double FlatSimplexVolumeRatio(const TensorFn& f, const Eigen::VectorXd& p,
                              DType dtype) {
  const int64_t n = p.size();
  Eigen::MatrixXd e(n, n - 1);
  e << Eigen::MatrixXd::Identity(n - 1, n - 1),
      -Eigen::RowVectorXd::Ones(n - 1);
  Eigen::MatrixXd rfe = AmbientJacobian(f, p, dtype).topRows(n - 1) * e;
  return std::abs(rfe.determinant());
}

Tensor LogVolumeRatio(const Manifold& m, const TensorFn& f, const Tensor& x) {
  FT_CHECK(x.rank() == 2 && x.dim(1) == m.ambient(),
           "LogVolumeRatio: ", m.name(), " needs [N, ", m.ambient(), "], got ",
           x.shape().ToString());
  const int64_t num = x.dim(0), n = m.ambient();
  Tensor jac = BatchJacobian(f, x, /*create_graph=*/true);    // [N, n, n]
  Tensor a = MatMulT(jac, jac, /*transpose_a=*/true, false);  // F'F
  // Unit normal nu at x (depends on x, so upstream parameters get the right
  // gradient), P = I - nu nu', B = P F'F P + nu nu'.
  Tensor nu =
      m.kind() == ManifoldKind::kSphere
          ? x / Sqrt(Sum(Square(x), 1, /*keepdim=*/true))
          : Tensor::Full({num, n}, 1.0 / std::sqrt(double(n)), x.dtype());
  Tensor nn = Reshape(nu, {num, n, 1}) * Reshape(nu, {num, 1, n});
  Tensor p = Reshape(Tensor::Eye(n, x.dtype()), {1, n, n}) - nn;
  Tensor b = MatMul(MatMul(p, a), p) + nn;
  return 0.5 * LogDetSpd(b);
}

Tensor LogDetSpd(const Tensor& g) {
  FT_CHECK(g.rank() == 3 && g.dim(1) == g.dim(2),
           "LogDetSpd: needs [N, k, k], got ", g.shape().ToString());
  const int64_t num = g.dim(0), k = g.dim(1);
  auto entry = [&](int64_t i, int64_t j) {
    return Reshape(Narrow(Narrow(g, 1, i, 1), 2, j, 1), {num});
  };
  // Cholesky g = L L': L_jj = sqrt(g_jj - sum_t L_jt^2),
  // L_ij = (g_ij - sum_t L_it L_jt) / L_jj for i > j.
  std::vector<std::vector<Tensor>> l(k, std::vector<Tensor>(k));
  Tensor logdet = Tensor::Zeros({num}, g.dtype());
  for (int64_t j = 0; j < k; ++j) {
    Tensor d = entry(j, j);
    for (int64_t t = 0; t < j; ++t) d = d - Square(l[j][t]);
    logdet = logdet + Log(d);  // log L_jj^2
    Tensor ljj = Sqrt(d);
    for (int64_t i = j + 1; i < k; ++i) {
      Tensor s = entry(i, j);
      for (int64_t t = 0; t < j; ++t) s = s - l[i][t] * l[j][t];
      l[i][j] = s / ljj;
    }
    l[j][j] = ljj;
  }
  return logdet;
}

}  // namespace flowtape::manifolds
