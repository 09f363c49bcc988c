#include "manifolds/recursive_sphere_flow.h"

#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "manifolds/angle.h"
#include "manifolds/torus_flows.h"

namespace flowtape::manifolds {
namespace {
Tensor Col(const Tensor& x, int64_t j) { return Narrow(x, 1, j, 1); }

// (r cos phi, r sin phi, z) with r = sqrt((1 - z)(1 + z)), [N, 3].
Tensor FromCylinder(const Tensor& z, const Tensor& phi) {
  Tensor r = Sqrt(Clamp((1.0 - z) * (1.0 + z), 0.0, 1.0));
  return Concat({r * Cos(phi), r * Sin(phi), z}, 1);
}
}  // namespace

absl::Status RecursiveSphereFlowOptions::Validate() const {
  if (height_bins < 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "recursive_sphere_flow: need height_bins >= 2, got ", height_bins));
  if (hidden.empty())
    return absl::InvalidArgumentError(
        "recursive_sphere_flow: needs a hidden layer");
  for (int64_t h : hidden)
    if (h < 1)
      return absl::InvalidArgumentError(absl::StrCat(
          "recursive_sphere_flow: hidden sizes must be >= 1, got ", h));
  return azimuth.Validate();
}

absl::StatusOr<std::shared_ptr<RecursiveSphereFlow>>
RecursiveSphereFlow::Create(const RecursiveSphereFlowOptions& options,
                            Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<RecursiveSphereFlow>(
      new RecursiveSphereFlow(options, rng));
}

RecursiveSphereFlow::RecursiveSphereFlow(const RecursiveSphereFlowOptions& o,
                                         Rng& rng)
    : o_(o) {
  height_.bins = o.height_bins;
  height_.bound = 1.0;
  auto mlp = [&](const char* name, int64_t in, int64_t out) {
    std::vector<int64_t> sizes = {in};
    sizes.insert(sizes.end(), o.hidden.begin(), o.hidden.end());
    sizes.push_back(out);
    return RegisterModule(name, nn::MLP::Create(sizes, o.activation, rng,
                                                /*zero_last=*/true)
                                    .value());
  };
  height_net_ = mlp("height_net", 2, height_.num_params());
  azimuth_net_ = mlp("azimuth_net", 1, o.azimuth.params_per_entry());
  Eigen::Matrix3d q = Eigen::Matrix3d::Identity();
  if (o.rotate) {
    Eigen::Matrix3d g;
    for (int i = 0; i < 9; ++i) g(i / 3, i % 3) = rng.Normal();
    q = Eigen::HouseholderQR<Eigen::Matrix3d>(g).householderQ();
  }
  std::vector<double> rows(9);
  for (int i = 0; i < 9; ++i) rows[i] = q(i / 3, i % 3);
  rotation_ = RegisterBuffer("rotation", Tensor::FromVector({3, 3}, rows));
}

bool RecursiveSphereFlow::analytic_inverse() const {
  return !(o_.azimuth.kind == CircleMapKind::kMobius &&
           o_.azimuth.components > 1);
}

std::string RecursiveSphereFlow::name() const {
  return absl::StrCat("recursive_sphere_", o_.azimuth.name());
}

Tensor RecursiveSphereFlow::HeightParams(const Tensor& phi) const {
  return Reshape((*height_net_)(AngleFeatures(phi)),
                 {phi.dim(0), 1, height_.num_params()});
}

Tensor RecursiveSphereFlow::AzimuthParams(const Tensor& z) const {
  return Reshape((*azimuth_net_)(z),
                 {z.dim(0), 1, o_.azimuth.params_per_entry()});
}

flows::FlowResult RecursiveSphereFlow::Forward(const Tensor& x, const Tensor&,
                                               Rng*) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == 3, name(),
           ".forward: needs [N, 3], got ", x.shape().ToString());
  Tensor z = Col(x, 2), phi = WrapAngle(Atan2(Col(x, 1), Col(x, 0)));
  flows::RqSplineResult h =
      flows::RqSpline(z, HeightParams(phi), height_, /*inverse=*/false);
  CircleMapResult a =
      ApplyCircleMap(o_.azimuth, phi, AzimuthParams(h.value), false);
  Tensor y = MatMulT(FromCylinder(h.value, a.value), rotation_, false, true);
  flows::FlowResult out(y, Reshape(h.logabsdet + a.logabsdet, {x.dim(0)}));
  out.status = a.status;
  return out;
}

flows::FlowResult RecursiveSphereFlow::Inverse(const Tensor& y, const Tensor&,
                                               Rng*) const {
  FT_CHECK(y.rank() == 2 && y.dim(1) == 3, name(),
           ".inverse: needs [N, 3], got ", y.shape().ToString());
  Tensor v = MatMul(y, rotation_);  // Q' y per row
  Tensor z2 = Col(v, 2), phi2 = WrapAngle(Atan2(Col(v, 1), Col(v, 0)));
  CircleMapResult a = ApplyCircleMap(o_.azimuth, phi2, AzimuthParams(z2), true);
  flows::RqSplineResult h =
      flows::RqSpline(z2, HeightParams(a.value), height_, /*inverse=*/true);
  flows::FlowResult out(FromCylinder(h.value, a.value),
                        Reshape(h.logabsdet + a.logabsdet, {y.dim(0)}));
  out.status = a.status;
  return out;
}

}  // namespace flowtape::manifolds
