// Sphere models: the densities on S^2 of benchmarks/earth (manifolds/), built
// from a SphereModelSpec, and their self-describing model files.
//
// Kinds (all with a uniform base density on S^2; "affine" = a normalized
// affine flow, manifolds/sphere_flows.h):
//   affine            a chain of `layers` affine flows
//   mixture           `components` chains of `layers` affine flows, mixed
//                     with trained weights (manifold_flow.h, FlowMixture)
//   neural            affine, then `blocks` x (cylindrical coupling flow
//                     (8 components, MLPs of `hidden` units) + affine)
//   recursive, recursive_mobius
//                     the same with recursive sphere flows (an interval
//                     spline for the height, a circle spline / a mixture of
//                     4 Moebius maps for the azimuth; `bins` bins,
//                     conditioners `hidden`-`hidden`)
//   recursive_mixture `components` = K chains p_k of kind recursive, mixed
//                     with trained weights by FlowMixture:
//                       log p(x) = logsumexp_k (log w_k + log p_k(x)),
//                       w = softmax(logits), logits [K] zero at the start;
//                       log p_k(x) = log R_k(x) (the chain's Forward
//                       log-det, data -> base) - log(4 pi);
//                     a density w.r.t. area on the unit sphere (integrates
//                     to 1); samples: k ~ Categorical(w), then p_k's
//                     uniform draw through its chain's Inverses.
//                     `layers` is unused (as for the other block kinds).
//   rfm               Riemannian flow matching (manifolds/
//                     sphere_flow_matching.h): a velocity net of
//                     `field.depth` hidden layers of `field.width` units
//                     (`field.activation`): a ConcatSquash net on (t, x), or
//                     with field.fourier = m > 0 an MLP on m random Fourier
//                     features of x (frequencies N(0, fourier_scale^2)) and
//                     of t; projected on the tangent plane, integrated by
//                     SphereCnf with `field.step_size`
// The first affine flow of each chain starts centred on a point (b = -beta
// centre, beta 0.3 for a single chain and 0.7 in a mixture; a mixture's
// components are centred on random training rows): SphereModelInit
// gives the points (the training data's mean direction, random training
// rows); only initial values depend on them, never the parameters' names or
// shapes.
//
// A sphere model file is a checkpoint (nn/checkpoint.h) of the model's
// parameters and buffers whose metadata entry "sphere_model" holds
//   {"format": "flowtape.sphere_model", "version": 1, "kind": "mixture",
//    "layers": 2, "components": 32, "blocks": 2, "hidden": 32, "bins": 8,
//    "dtype": "float64"}
// and, for kind "rfm" only, "field": {"width": 256, "depth": 4,
// "activation": "tanh", "fourier": 64, "fourier_scale": 4.0,
// "step_size": 0.01}.
// Reading is strict (every key required, no others; kind one of the above;
// layers, components in [1, 4096]; blocks, bins in [1, 1024]; hidden in
// [1, 4096]; field: width in [1, 4096], depth in [1, 16], an nn::Activation
// name, fourier in [0, 4096], fourier_scale in (0, 1e4], step_size in
// (0, 1]; dtype "float32" or "float64"), and the model the
// spec describes must be about as large as the file (parameters <= 16 x the
// file's values + 2^20) before it is built. LoadSphereModel builds it (float64,
// default SphereModelInit, Rng(0)), converts it to the dtype and restores every
// tensor (names, shapes and values checked as LoadCheckpoint does), so its
// log-densities equal the saved model's bit for bit. SaveSphereModel checks
// that the model is what the spec builds (names, shapes, dtype). Errors name
// the file.
#ifndef FLOWTAPE_MODELS_SPHERE_MODEL_H_
#define FLOWTAPE_MODELS_SPHERE_MODEL_H_

#include <functional>
#include <memory>
#include <string>

#include "Eigen/Dense"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/dtype.h"
#include "autodiff/rng.h"
#include "manifolds/density.h"

namespace flowtape::models {

// The velocity field of kind "rfm" and the step of its likelihood ODE.
struct SphereFieldSpec {
  int64_t width = 128;
  int depth = 3;
  std::string activation = "tanh";
  int64_t fourier = 0;         // Fourier features of x; 0 = ConcatSquash net
  double fourier_scale = 1.0;  // their frequencies' standard deviation
  double step_size = 0.01;     // SphereCnf's RK4 step
  // InvalidArgument naming the field out of the ranges above ("field: ...").
  absl::Status Validate() const;
};

struct SphereModelSpec {
  std::string kind = "affine";
  int layers = 12, components = 32, blocks = 2;
  int64_t hidden = 32;
  int64_t bins = 8;       // recursive kinds: spline bins of height and azimuth
  SphereFieldSpec field;  // kind "rfm" only
  DType dtype = kFloat64;
  // InvalidArgument naming the first field out of the ranges above ("kind:
  // ...", "layers: want an integer in [1, 4096], got 0"); field.Validate()
  // for kind "rfm" (other kinds ignore `field`). MakeSphereModel,
  // SaveSphereModel and the file reader call it.
  absl::Status Validate() const;
};

// Both centres are unit vectors (|norm - 1| <= 1e-3; MakeSphereModel
// returns InvalidArgument otherwise).
struct SphereModelInit {
  Eigen::Vector3d mean_direction = Eigen::Vector3d(0, 0, 1);
  // A random data point per mixture component (default: mean_direction).
  std::function<Eigen::Vector3d(Rng&)> random_point;
};

// InvalidArgument for a spec that fails spec.Validate() or a centre of
// `init` that is not a unit vector.
absl::StatusOr<std::shared_ptr<manifolds::ManifoldDensity>> MakeSphereModel(
    const SphereModelSpec& spec, const SphereModelInit& init, Rng& rng);

absl::Status SaveSphereModel(const std::string& path,
                             const SphereModelSpec& spec,
                             const manifolds::ManifoldDensity& model);
absl::StatusOr<std::shared_ptr<manifolds::ManifoldDensity>> LoadSphereModel(
    const std::string& path);

std::string SphereModelSpecToJson(const SphereModelSpec& spec);
absl::StatusOr<SphereModelSpec> SphereModelSpecFromJson(
    const std::string& json);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_SPHERE_MODEL_H_
