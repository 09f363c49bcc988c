#include "manifolds/torus_flows.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "manifolds/angle.h"

namespace flowtape::manifolds {

Tensor AngleFeatures(const Tensor& theta) {
  return Concat({Cos(theta), Sin(theta)}, 1);
}

absl::Status TorusFlowOptions::Validate() const {
  const int64_t min_dims = structure == TorusStructure::kCoupling ? 2 : 1;
  if (dims < min_dims)
    return absl::InvalidArgumentError(
        absl::StrCat("torus_flow: needs dims >= ", min_dims, ", got ", dims));
  if (hidden.empty())
    return absl::InvalidArgumentError("torus_flow: needs a hidden layer");
  for (int64_t h : hidden)
    if (h < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("torus_flow: hidden sizes must be >= 1, got ", h));
  return map.Validate();
}

absl::StatusOr<std::shared_ptr<TorusFlow>> TorusFlow::Create(
    const TorusFlowOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<TorusFlow>(new TorusFlow(options, rng));
}

TorusFlow::TorusFlow(const TorusFlowOptions& o, Rng& rng) : o_(o) {
  const int64_t n = o.dims, p = o.map.params_per_entry();
  auto mlp = [&](int64_t in, int64_t out) {
    std::vector<int64_t> sizes = {in};
    sizes.insert(sizes.end(), o.hidden.begin(), o.hidden.end());
    sizes.push_back(out);
    nets_.push_back(RegisterModule(absl::StrCat("net", nets_.size()),
                                   nn::MLP::Create(sizes, o.activation, rng,
                                                   /*zero_last=*/true)
                                       .value()));
  };
  switch (o.structure) {
    case TorusStructure::kElementwise:
      free_ = RegisterParameter("params", Tensor::Zeros({n, p}));
      break;
    case TorusStructure::kCoupling:
      pass_size_ = (n + 1) / 2;
      pass_begin_ = o.flip ? n - pass_size_ : 0;
      mlp(2 * pass_size_, (n - pass_size_) * p);
      break;
    case TorusStructure::kAutoregressive:
      free_ = RegisterParameter("params", Tensor::Zeros({1, p}));
      for (int64_t d = 1; d < n; ++d) mlp(2 * d, p);
      break;
  }
}

bool TorusFlow::analytic_inverse() const {
  return !(o_.map.kind == CircleMapKind::kMobius && o_.map.components > 1);
}

std::string TorusFlow::name() const {
  const char* s = o_.structure == TorusStructure::kElementwise ? "elementwise"
                  : o_.structure == TorusStructure::kCoupling
                      ? "coupling"
                      : "autoregressive";
  return absl::StrCat("torus_", s, "_", o_.map.name());
}

void TorusFlow::CheckInput(const char* op, const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == o_.dims, name(), ".", op,
           ": needs angles [N, ", o_.dims, "], got ", x.shape().ToString());
}

Tensor TorusFlow::Params(int64_t net, const Tensor& angles, int64_t m) const {
  Tensor h = (*nets_[net])(AngleFeatures(angles));
  return Reshape(h, {angles.dim(0), m, o_.map.params_per_entry()});
}

flows::FlowResult TorusFlow::Forward(const Tensor& x, const Tensor&,
                                     Rng*) const {
  CheckInput("forward", x);
  const int64_t num = x.dim(0), n = o_.dims, p = o_.map.params_per_entry();
  if (o_.structure == TorusStructure::kCoupling) {
    const int64_t m = n - pass_size_;
    Tensor xa = Narrow(x, 1, pass_begin_, pass_size_);
    Tensor xb = Narrow(x, 1, o_.flip ? 0 : pass_size_, m);
    CircleMapResult r = ApplyCircleMap(o_.map, xb, Params(0, xa, m), false);
    Tensor a = WrapAngle(xa);
    flows::FlowResult out(
        o_.flip ? Concat({r.value, a}, 1) : Concat({a, r.value}, 1),
        Sum(r.logabsdet, 1));
    out.status = r.status;
    return out;
  }
  Tensor params;
  if (o_.structure == TorusStructure::kElementwise) {
    params = BroadcastTo(Reshape(free_, {1, n, p}), {num, n, p});
  } else {
    std::vector<Tensor> per_dim = {
        BroadcastTo(Reshape(free_, {1, 1, p}), {num, 1, p})};
    for (int64_t d = 1; d < n; ++d)
      per_dim.push_back(Params(d - 1, Narrow(x, 1, 0, d), 1));
    params = Concat(per_dim, 1);
  }
  CircleMapResult r = ApplyCircleMap(o_.map, x, params, false);
  flows::FlowResult out(r.value, Sum(r.logabsdet, 1));
  out.status = r.status;
  return out;
}

flows::FlowResult TorusFlow::Inverse(const Tensor& z, const Tensor&,
                                     Rng*) const {
  CheckInput("inverse", z);
  const int64_t num = z.dim(0), n = o_.dims, p = o_.map.params_per_entry();
  if (o_.structure == TorusStructure::kCoupling) {
    const int64_t m = n - pass_size_;
    Tensor za = Narrow(z, 1, pass_begin_, pass_size_);
    Tensor zb = Narrow(z, 1, o_.flip ? 0 : pass_size_, m);
    CircleMapResult r = ApplyCircleMap(o_.map, zb, Params(0, za, m), true);
    Tensor a = WrapAngle(za);
    flows::FlowResult out(
        o_.flip ? Concat({r.value, a}, 1) : Concat({a, r.value}, 1),
        Sum(r.logabsdet, 1));
    out.status = r.status;
    return out;
  }
  if (o_.structure == TorusStructure::kElementwise) {
    CircleMapResult r = ApplyCircleMap(
        o_.map, z, BroadcastTo(Reshape(free_, {1, n, p}), {num, n, p}), true);
    flows::FlowResult out(r.value, Sum(r.logabsdet, 1));
    out.status = r.status;
    return out;
  }
  std::vector<Tensor> cols;
  flows::FlowResult out;
  out.logdet = Tensor::Zeros({num}, z.dtype());
  for (int64_t d = 0; d < n; ++d) {
    Tensor params = d == 0 ? BroadcastTo(Reshape(free_, {1, 1, p}), {num, 1, p})
                           : Params(d - 1, Concat(cols, 1), 1);
    CircleMapResult r =
        ApplyCircleMap(o_.map, Narrow(z, 1, d, 1), params, true);
    cols.push_back(r.value);
    out.logdet = out.logdet + Sum(r.logabsdet, 1);
    if (out.status.ok()) out.status = r.status;
  }
  out.value = Concat(cols, 1);
  return out;
}

}  // namespace flowtape::manifolds
