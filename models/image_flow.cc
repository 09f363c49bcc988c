#include "models/image_flow.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <tuple>

#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "nn/optim.h"
#include "nn/schedule.h"

namespace flowtape::models {
namespace {

// The model's input for integer pixels (dequantised, logit-transformed, in
// the model's dtype, flattened for vector flows) and the transform's logdet.
data::LogitResult ModelInput(const ImageFlow& f, const Tensor& pixels,
                             Rng& rng) {
  Tensor v = Cast(data::Dequantize(pixels, f.levels, rng), f.model->dtype());
  data::LogitResult y = data::LogitTransform(v, f.alpha);
  if (f.flatten) y.y = Reshape(y.y, {pixels.dim(0), -1});
  return y;
}

}  // namespace

Tensor ImageFlow::Input(const Tensor& pixels, Rng& rng) const {
  return ModelInput(*this, pixels, rng).y;
}

Tensor ImageFlow::Nll(const Tensor& pixels, Rng& rng,
                      const Tensor& context) const {
  data::LogitResult y = ModelInput(*this, pixels, rng);
  return model->Nll(y.y, context, &rng) - Mean(y.logdet);
}

Tensor OneHot(const std::vector<int>& labels, int k) {
  Tensor t = Tensor::Zeros(Shape{static_cast<int64_t>(labels.size()), k});
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= 0 && labels[i] < k)
      t.mutable_data<double>()[i * k + labels[i]] = 1;
  return t;
}

std::vector<double> ImageFlow::BitsPerDim(const Tensor& pixels, int64_t batch,
                                          const Tensor& context,
                                          uint64_t seed) const {
  NoGradScope no_grad;
  Rng rng(seed);
  const int64_t n = pixels.dim(0), d = image.numel();
  std::vector<double> out;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    data::LogitResult y = ModelInput(*this, Narrow(pixels, 0, start, len), rng);
    Tensor c = context.defined() ? Narrow(context, 0, start, len) : Tensor();
    Tensor log_p = model->LogProb(y.y, c, &rng) + y.logdet;
    for (int64_t i = 0; i < len; ++i)
      out.push_back(data::BitsPerDim(-log_p[i], d, levels));
  }
  return out;
}

Tensor ImageFlow::SampleImages(int64_t n, Rng& rng,
                               const Tensor& context) const {
  NoGradScope no_grad;
  Tensor y = model->Sample(n, rng, context);
  std::vector<int64_t> dims = {n};
  for (int64_t v : image.dims()) dims.push_back(v);
  return Reshape(data::InverseLogit(y, alpha), dims);
}

training::NllFn ImageFlow::AsNllFn() const {
  return [this](const Tensor& x, const Tensor& context, Rng& rng) {
    return Nll(x, rng, context);
  };
}

ImageRunConfig DefaultImageConfig(const std::string& flow, bool paper) {
  ImageRunConfig c;
  ModelConfig& z = c.zoo;
  if (!paper) {
    z.layers = 4, z.channels = 32, z.levels = 2, z.depth = 4;
    z.hidden = {256};
    // MAF's unbounded log-scales diverge at 1e-3 on MNIST; 3e-4 is stable.
    if (flow == "maf") z.layers = 5, z.hidden = {512}, c.lr = 3e-4;
    // FFJORD pays ~20 NFE per step: a shorter run (about 8 min on 2 cores).
    if (flow == "ffjord" || flow == "cfm") c.steps = 800, c.batch = 32;
    return c;
  }
  c.steps = 100000, c.n_train = 54000, c.n_test = 10000;
  if (flow == "glow") z.levels = 2, z.depth = 32, z.channels = 512;
  if (flow == "realnvp") z.layers = 8, z.channels = 64;
  if (flow == "maf")
    z.layers = 5, z.hidden = {1024}, c.batch = 100, c.lr = 1e-4;
  return c;
}

training::TrainData SplitImages(const Tensor& pixels, const Tensor& context,
                                const ImageRunConfig& c, Rng& rng) {
  const std::vector<int64_t> order = data::Permutation(pixels.dim(0), rng);
  Tensor all = data::TakeRows(pixels, order);
  const int64_t n_train = std::min(c.n_train, all.dim(0) * 9 / 10);
  const int64_t n_val = std::max<int64_t>(n_train / 10, 1);
  training::TrainData d;
  d.train = Narrow(all, 0, 0, n_train);
  d.val = Narrow(all, 0, n_train, n_val);
  if (context.defined()) {
    Tensor ctx = data::TakeRows(context, order);
    d.train_context = Narrow(ctx, 0, 0, n_train);
    d.val_context = Narrow(ctx, 0, n_train, n_val);
  }
  return d;
}

absl::Status ImageRunConfig::Validate() const {
  for (const auto& [name, v, min] :
       {std::make_tuple("steps", steps, int64_t{1}),
        std::make_tuple("batch", batch, int64_t{1}),
        std::make_tuple("n_train", n_train, int64_t{1}),
        std::make_tuple("n_test", n_test, int64_t{0})})
    if (v < min)
      return absl::InvalidArgumentError(
          absl::StrFormat("image run: %s = %d must be >= %d", name, v, min));
  if (!std::isfinite(lr) || !(lr > 0))
    return absl::InvalidArgumentError(
        absl::StrFormat("image run: lr = %g must be finite and > 0", lr));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<nn::Adam>> ImageAdam(const ImageFlow& f,
                                                    const ImageRunConfig& c) {
  FT_RETURN_IF_ERROR(c.Validate());
  nn::AdamOptions options;
  options.lr = c.lr;
  FT_ASSIGN_OR_RETURN(auto adam, nn::Adam::Create(*f.model, options));
  const int64_t warmup = std::min<int64_t>(200, c.steps / 10);
  adam->set_schedule(
      nn::LinearWarmup(warmup, nn::CosineAnnealingLr(c.lr, c.steps - warmup)));
  return adam;
}

training::TrainOptions ImageTrainOptions(const ImageFlow& f,
                                         const training::TrainData& d,
                                         const ImageRunConfig& c) {
  training::TrainOptions o;
  o.batch_size = c.batch;
  o.max_steps = c.steps;
  o.eval_every = std::max<int64_t>(1, c.steps / 10);
  o.eval_batch_size = 256;
  o.log_every = std::max<int64_t>(1, c.steps / 20);
  o.clip_grad_norm = 100.0;
  o.seed = c.seed;
  o.communicator = c.communicator;
  // The default check would score raw pixel rows with the flow, whose input
  // is the transformed image (flattened for vector flows): check the
  // pipeline instead.
  o.check_model = [&f, &d](Rng& rng) -> absl::Status {
    NoGradScope no_grad;
    const int64_t n = std::min<int64_t>(64, d.train.dim(0));
    const Tensor ctx =
        d.train_context.defined() ? Narrow(d.train_context, 0, 0, n) : Tensor();
    const Tensor samples = f.SampleImages(n, rng, ctx);
    const double nll = f.Nll(Narrow(d.train, 0, 0, n), rng, ctx).item();
    for (int64_t i = 0; i < samples.numel(); ++i)
      if (!std::isfinite(samples[i]))
        return absl::FailedPreconditionError(
            "the model cannot sample: a sample is not finite");
    if (!std::isfinite(nll))
      return absl::FailedPreconditionError(absl::StrFormat(
          "the model cannot score: nll of %d training images is %g", n, nll));
    return absl::OkStatus();
  };
  if (!c.checkpoint.empty()) {
    o.checkpoint_every = 500;
    o.checkpoint_path = c.checkpoint;
  }
  return o;
}

absl::StatusOr<training::TrainResult> TrainImageFlow(const ImageFlow& f,
                                                     const Tensor& pixels,
                                                     const ImageRunConfig& c,
                                                     Rng& rng,
                                                     const Tensor& context) {
  FT_RETURN_IF_ERROR(c.Validate());
  const training::TrainData d = SplitImages(pixels, context, c, rng);
  // Data-dependent initialisation (ActNorm) from the first training batch.
  {
    Rng noise(c.seed);
    const int64_t b = std::min(c.batch, d.train.dim(0));
    data::LogitResult y = ModelInput(f, Narrow(d.train, 0, 0, b), noise);
    Tensor ctx =
        d.train_context.defined() ? Narrow(d.train_context, 0, 0, b) : Tensor();
    FT_RETURN_IF_ERROR(f.model->InitializeFromData(y.y, ctx, &noise));
  }
  FT_ASSIGN_OR_RETURN(std::shared_ptr<nn::Adam> adam, ImageAdam(f, c));
  std::cerr << absl::StrFormat(
      "training %s: %d parameters, %d train / %d val images, %d steps of %d\n",
      f.model->name(), f.model->NumParameters(), d.train.dim(0), d.val.dim(0),
      c.steps, c.batch);
  return training::TrainNll(*f.model, f.AsNllFn(), *adam, d,
                            ImageTrainOptions(f, d, c));
}

absl::StatusOr<ImageFlow> MakeImageFlow(const std::string& name,
                                        ModelConfig config, const Shape& image,
                                        int levels, Rng& rng) {
  ImageFlow f;
  f.image = image;
  f.levels = levels;
  f.flatten = !FindFlow(name, Domain::kImages).ok();
  config.event = f.flatten ? Shape{image.numel()} : image;
  FT_ASSIGN_OR_RETURN(f.model, MakeModel(name, config, rng));
  return f;
}

}  // namespace flowtape::models
