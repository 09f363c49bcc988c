#include "nn/layers.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "nn/init.h"
#include "nn/masked_matmul.h"

namespace flowtape::nn {

Tensor Apply(Activation a, const Tensor& x) {
  switch (a) {
    case Activation::kTanh:
      return Tanh(x);
    case Activation::kRelu:
      return Relu(x);
    case Activation::kElu:
      return Elu(x);
    case Activation::kLeakyRelu:
      return LeakyRelu(x);
    case Activation::kSoftplus:
      return Softplus(x);
    case Activation::kSigmoid:
      return Sigmoid(x);
  }
  return x;
}

absl::StatusOr<Activation> ParseActivation(const std::string& name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "relu") return Activation::kRelu;
  if (name == "elu") return Activation::kElu;
  if (name == "leaky_relu") return Activation::kLeakyRelu;
  if (name == "softplus") return Activation::kSoftplus;
  if (name == "sigmoid") return Activation::kSigmoid;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown activation '", name,
      "' (want tanh, relu, elu, leaky_relu, softplus or sigmoid)"));
}

absl::StatusOr<std::shared_ptr<Linear>> Linear::Create(int64_t in, int64_t out,
                                                       Rng& rng, bool bias) {
  if (in < 1 || out < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "linear: in = ", in, ", out = ", out, " (want both >= 1)"));
  return std::shared_ptr<Linear>(new Linear(in, out, rng, bias));
}

Linear::Linear(int64_t in, int64_t out, Rng& rng, bool bias) {
  w_ = RegisterParameter("weight", XavierUniform({in, out}, rng));
  if (bias) b_ = RegisterParameter("bias", Zeros({out}));
}

Tensor Linear::operator()(const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == w_.dim(0), "linear: input ",
           x.shape().ToString(), " vs weight ", w_.shape().ToString());
  return b_.defined() ? flowtape::Affine(x, w_, b_) : MatMul(x, w_);
}

namespace {

absl::Status CheckMask(const Tensor& mask) {
  if (!mask.defined() || mask.rank() != 2 || mask.dim(0) < 1 || mask.dim(1) < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "masked_linear: mask must be [in, out] with in, out >= 1, got ",
        mask.defined() ? mask.shape().ToString() : "undefined"));
  const std::vector<double> m = mask.ToVector();
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i] != 0.0 && m[i] != 1.0)
      return absl::InvalidArgumentError(
          absl::StrCat("masked_linear: mask entries must be 0 or 1, entry ", i,
                       " is ", m[i]));
  return absl::OkStatus();
}

absl::Status CheckSizes(const std::vector<int64_t>& sizes) {
  if (sizes.size() < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("mlp: need at least {in, out} sizes, got ", sizes.size(),
                     " size", sizes.size() == 1 ? "" : "s"));
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] < 1)
      return absl::InvalidArgumentError(
          absl::StrCat("mlp: sizes[", i, "] = ", sizes[i], " must be >= 1"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<MaskedLinear>> MaskedLinear::Create(
    const Tensor& mask, Rng& rng) {
  FT_RETURN_IF_ERROR(CheckMask(mask));
  return std::shared_ptr<MaskedLinear>(new MaskedLinear(mask, rng));
}

MaskedLinear::MaskedLinear(const Tensor& mask, Rng& rng) {
  // A copy, so the buffer is a constant this layer owns.
  mask_ = RegisterBuffer("mask", mask.Detach());
  w_ = RegisterParameter("weight", XavierUniform(mask.shape(), rng));
  b_ = RegisterParameter("bias", Zeros({mask.dim(1)}));
}

Tensor MaskedLinear::operator()(const Tensor& x) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == w_.dim(0), "masked_linear: input ",
           x.shape().ToString(), " vs weight ", w_.shape().ToString());
  return MaskedAffine(x, w_, mask_, b_);
}

absl::StatusOr<std::shared_ptr<MLP>> MLP::Create(
    const std::vector<int64_t>& sizes, Activation act, Rng& rng,
    bool zero_last) {
  FT_RETURN_IF_ERROR(CheckSizes(sizes));
  return std::shared_ptr<MLP>(new MLP(sizes, act, rng, zero_last));
}

MLP::MLP(const std::vector<int64_t>& sizes, Activation act, Rng& rng,
         bool zero_last)
    : sizes_(sizes), act_(act) {
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    auto layer = Linear::Create(sizes[i], sizes[i + 1], rng).value();
    layers_.push_back(RegisterModule(absl::StrCat("layer", i), layer));
  }
  if (zero_last) {
    for (Tensor p : layers_.back()->Parameters()) {
      double* d = p.mutable_data<double>();
      for (int64_t i = 0; i < p.numel(); ++i) d[i] = 0.0;
    }
  }
}

Tensor MLP::operator()(const Tensor& x) const {
  Tensor h = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(h);
    if (i + 1 < layers_.size()) h = Apply(act_, h);
  }
  return h;
}

}  // namespace flowtape::nn
