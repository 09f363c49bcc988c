#include "experiments/image_run.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <mutex>

#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "data/preprocess.h"
#include "nn/optim.h"
#include "nn/schedule.h"

namespace flowtape::experiments {

absl::StatusOr<ImageRun> TrainImages(Experiment& ex, const std::string& flow,
                                     const models::ImageRunConfig& c,
                                     const Shape& image, int levels,
                                     double alpha, const Tensor& pixels,
                                     Rng& rng, const Tensor& context) {
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
  std::mutex mu;
  models::ImageFlow rank0;
  auto make = [&](int rank) -> absl::StatusOr<training::Replica> {
    Rng init(c.seed);
    FT_ASSIGN_OR_RETURN(
        models::ImageFlow f,
        models::MakeImageFlow(flow, c.zoo, image, levels, init));
    f.alpha = alpha;
    auto adam =
        std::make_shared<nn::Adam>(*f.model, nn::AdamOptions{.lr = c.lr});
    const int64_t warmup = std::min<int64_t>(200, c.steps / 10);
    adam->set_schedule(nn::LinearWarmup(
        warmup, nn::CosineAnnealingLr(c.lr, c.steps - warmup)));
    if (rank == 0) {
      std::lock_guard<std::mutex> lock(mu);
      rank0 = f;
    }
    training::NllFn nll = [f](const Tensor& x, const Tensor& ctx, Rng& r) {
      return f.Nll(x, r, ctx);
    };
    return training::Replica{f.model, nll, adam};
  };
  training::TrainOptions o;
  o.batch_size = c.batch;
  o.max_steps = c.steps;
  o.eval_every = std::max<int64_t>(1, c.steps / 10);
  o.eval_batch_size = 256;
  o.log_every = std::max<int64_t>(1, c.steps / 20);
  o.clip_grad_norm = 100.0;
  o.seed = c.seed;
  if (!c.checkpoint.empty()) {
    o.checkpoint_every = 500;
    o.checkpoint_path = c.checkpoint;
  }
  std::cerr << absl::StrFormat(
      "training %s: %d train / %d val images, %d steps of %d, %d thread(s)\n",
      flow, n_train, n_val, c.steps, c.batch, ex.threads());
  FT_ASSIGN_OR_RETURN(training::ThreadedTraining run, ex.Train(make, d, o));
  ex.history().AddTraining(run.result, o.log_every, flow);
  ImageRun out{rank0, {flow, c.zoo, c.zoo.dtype}, run.result};
  out.spec.config.event = rank0.flatten ? Shape{image.numel()} : Shape(image);
  FT_ASSIGN_OR_RETURN(
      ex.config()["model"],
      io::ParseJson(models::ModelSpecToJson(out.spec), "model spec"));
  ex.config()["run"] = {{"steps", c.steps},
                        {"batch", c.batch},
                        {"n_train", n_train},
                        {"n_val", n_val},
                        {"lr", c.lr},
                        {"alpha", alpha},
                        {"checkpoint", c.checkpoint}};
  return out;
}

}  // namespace flowtape::experiments
