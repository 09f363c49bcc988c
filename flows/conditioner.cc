#include "flows/conditioner.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "nn/conv.h"

namespace flowtape::flows {
namespace {

class ConvNetModule : public nn::Module {
 public:
  ConvNetModule(int64_t in, const std::vector<int64_t>& hidden, int64_t out,
                nn::Activation act, Rng& rng)
      : act_(act) {
    FT_CHECK(!hidden.empty(), "conv_net: needs a hidden width");
    for (size_t l = 0; l <= hidden.size(); ++l) {
      const bool last = l == hidden.size();
      const int64_t from = l == 0 ? in : hidden[l - 1];
      const int64_t to = last ? out : hidden[l];
      convs_.push_back(RegisterModule(
          absl::StrCat("conv", l),
          nn::Conv2d::Create(from, to, l == 0 || last ? 3 : 1, rng,
                             last ? nn::ConvInit::kZeros : nn::ConvInit::kHe)
              .value()));
    }
  }
  Tensor operator()(const Tensor& x) const {
    Tensor h = x;
    for (size_t l = 0; l < convs_.size(); ++l) {
      if (l > 0) h = nn::Apply(act_, h);
      h = (*convs_[l])(h);
    }
    return h;
  }

 private:
  nn::Activation act_;
  std::vector<std::shared_ptr<nn::Conv2d>> convs_;
};

}  // namespace

Net MlpNet(int64_t in, const std::vector<int64_t>& hidden, int64_t out,
           Rng& rng, nn::Activation act) {
  std::vector<int64_t> sizes = {in};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  return MakeNet(nn::MLP::Create(sizes, act, rng, /*zero_last=*/true).value());
}

Net ConvNet(int64_t in_channels, const std::vector<int64_t>& hidden,
            int64_t out_channels, Rng& rng, nn::Activation act) {
  return MakeNet(std::make_shared<ConvNetModule>(in_channels, hidden,
                                                 out_channels, act, rng));
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
