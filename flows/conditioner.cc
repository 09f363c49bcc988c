#include "flows/conditioner.h"

#include "autodiff/check.h"
#include "nn/conv.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

class ConvNetModule : public nn::Module {
 public:
  ConvNetModule(int64_t in, int64_t hidden, int64_t out, Rng& rng)
      : a_(RegisterModule("conv0",
                          std::make_shared<nn::Conv2d>(in, hidden, 3, rng))),
        b_(RegisterModule(
            "conv1", std::make_shared<nn::Conv2d>(hidden, hidden, 1, rng))),
        c_(RegisterModule(
            "conv2", std::make_shared<nn::Conv2d>(hidden, out, 3, rng,
                                                  nn::ConvInit::kZeros))) {}
  Tensor operator()(const Tensor& x) const {
    return (*c_)(Relu((*b_)(Relu((*a_)(x)))));
  }

 private:
  std::shared_ptr<nn::Conv2d> a_, b_, c_;
};

}  // namespace

Net MlpNet(int64_t in, const std::vector<int64_t>& hidden, int64_t out,
           Rng& rng, nn::Activation act) {
  std::vector<int64_t> sizes = {in};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  return MakeNet(
      std::make_shared<nn::MLP>(sizes, act, rng, /*zero_last=*/true));
}

Net ConvNet(int64_t in_channels, int64_t hidden, int64_t out_channels,
            Rng& rng) {
  return MakeNet(
      std::make_shared<ConvNetModule>(in_channels, hidden, out_channels, rng));
}

Tensor WithContext(const Tensor& x, const Tensor& context) {
  if (!context.defined()) return x;
  const int64_t n = x.dim(0), k = context.dim(-1);
  FT_CHECK(context.rank() == 2 && context.dim(0) == n, "conditioner: context ",
           context.shape().ToString(), " for input ", x.shape().ToString());
  if (x.rank() == 2) return Concat({x, context}, 1);
  FT_CHECK(x.rank() == 4, "conditioner: input ", x.shape().ToString(),
           " must be [N, D] or [N, C, H, W]");
  Tensor maps = BroadcastTo(Reshape(context, {n, k, 1, 1}),
                            Shape({n, k, x.dim(2), x.dim(3)}));
  return Concat({x, maps}, 1);
}

}  // namespace flowtape::flows
