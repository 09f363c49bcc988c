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
  const training::TrainData d = models::SplitImages(pixels, context, c, rng);
  const int64_t n_train = d.train.dim(0), n_val = d.val.dim(0);
  std::mutex mu;
  models::ImageFlow rank0;
  auto make = [&](int rank) -> absl::StatusOr<training::Replica> {
    Rng init(c.seed);
    FT_ASSIGN_OR_RETURN(
        models::ImageFlow f,
        models::MakeImageFlow(flow, c.zoo, image, levels, init));
    f.alpha = alpha;
    std::shared_ptr<nn::Adam> adam = models::ImageAdam(f, c);
    if (rank == 0) {
      std::lock_guard<std::mutex> lock(mu);
      rank0 = f;
    }
    training::NllFn nll = [f](const Tensor& x, const Tensor& ctx, Rng& r) {
      return f.Nll(x, r, ctx);
    };
    return training::Replica{f.model, nll, adam};
  };
  // Rank 0's model, set by `make` before training starts, is the one the
  // final check sees.
  training::TrainOptions o = models::ImageTrainOptions(rank0, d, c);
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
