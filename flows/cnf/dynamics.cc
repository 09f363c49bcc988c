#include "flows/cnf/dynamics.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

TimeMlp::TimeMlp(int64_t dim, const std::vector<int64_t>& hidden,
                 nn::Activation act, Rng& rng)
    : dim_(dim) {
  std::vector<int64_t> sizes{dim + 1};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(dim);
  mlp_ = RegisterModule("mlp", std::make_shared<nn::MLP>(sizes, act, rng));
}

Tensor TimeMlp::operator()(double t, const Tensor& z) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == dim_, "time_mlp: z ",
           z.shape().ToString(), " vs dim ", dim_);
  return (*mlp_)(Concat({z, Tensor::Full({z.dim(0), 1}, t)}, 1));
}

ConcatSquashLinear::ConcatSquashLinear(int64_t in, int64_t out, Rng& rng) {
  layer_ = RegisterModule("layer", std::make_shared<nn::Linear>(in, out, rng));
  gate_ =
      RegisterModule("hyper_gate", std::make_shared<nn::Linear>(1, out, rng));
  hyper_bias_ = RegisterModule(
      "hyper_bias", std::make_shared<nn::Linear>(1, out, rng, /*bias=*/false));
}

Tensor ConcatSquashLinear::operator()(double t, const Tensor& h) const {
  Tensor tt = Tensor::Full({1, 1}, t);
  return (*layer_)(h)*Sigmoid((*gate_)(tt)) + (*hyper_bias_)(tt);
}

ConcatSquashNet::ConcatSquashNet(int64_t dim,
                                 const std::vector<int64_t>& hidden,
                                 nn::Activation act, Rng& rng)
    : dim_(dim), act_(act) {
  std::vector<int64_t> sizes{dim};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(dim);
  for (size_t i = 0; i + 1 < sizes.size(); ++i)
    layers_.push_back(RegisterModule(
        absl::StrCat("layer", i),
        std::make_shared<ConcatSquashLinear>(sizes[i], sizes[i + 1], rng)));
}

Tensor ConcatSquashNet::operator()(double t, const Tensor& z) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == dim_, "concat_squash: z ",
           z.shape().ToString(), " vs dim ", dim_);
  Tensor h = z;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(t, h);
    if (i + 1 < layers_.size()) h = nn::Apply(act_, h);
  }
  return h;
}

}  // namespace flowtape::flows
