// Image-flow training for the images and ood binaries on the experiment's
// --threads replicas (cli/cli.h): the data split, schedule and
// options of models::TrainImageFlow (models/image_flow.h), with
// Experiment::Train instead of a single-process loop.
//
//   pixels [N, C, H, W] are shuffled with `rng`; the first
//   min(n_train, 0.9 N) rows train, the next max(n_train / 10, 1) validate;
//   Adam, lr linear warm-up over min(200, steps / 10) steps, then cosine;
//   validation every steps / 10, a progress line every steps / 20 (the
//   history.csv rows, labelled `flow`), gradient clipping at 100, the
//   initialisation pass (ActNorm) on the first global batch.
// Every replica is MakeImageFlow(flow, c.zoo, image, levels, Rng(c.seed))
// in c.zoo.dtype; the result holds rank 0's trained flow and the spec that
// rebuilds it (models/model_file.h).
// A flow whose model is a matched field's CNF (zoo "cfm",
// flows/matching/cfm_flow.h) trains instead by conditional flow matching on
// the OT path (sigma_min 1e-4) over the transformed images y
// (ImageFlow::Input), on the same --threads replicas
// (training/train_flow_matching.h, TrainFlowMatchingThreads: every replica
// dequantises the whole global batch from the shared stream and regresses
// on its rows; EMA 0.999, validation by the pipeline's NLL, the same split,
// schedule and model check). Every replica fits the mixture below (the same
// fit; rank 0's state is broadcast anyway). The zoo's cfm field is a
// ConcatSquash residual over a per-pixel two-component mixture field
// (flows/cnf/ mixture_baseline_velocity.h), fitted here before training to the
// transformed training images: background pixels (level 0) and the rest,
// each component's frequency, mean and variance per pixel.
#ifndef FLOWTAPE_EXPERIMENTS_IMAGE_RUN_H_
#define FLOWTAPE_EXPERIMENTS_IMAGE_RUN_H_

#include <string>

#include "absl/status/statusor.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "cli/cli.h"
#include "models/image_flow.h"
#include "models/model_spec.h"
#include "training/train.h"

namespace flowtape::experiments {

struct ImageRun {
  models::ImageFlow flow;
  models::ModelSpec spec;
  training::TrainResult result;
};

absl::StatusOr<ImageRun> TrainImages(cli::Experiment& ex,
                                     const std::string& flow,
                                     const models::ImageRunConfig& c,
                                     const Shape& image, int levels,
                                     double alpha, const Tensor& pixels,
                                     Rng& rng,
                                     const Tensor& context = Tensor());

}  // namespace flowtape::experiments

#endif  // FLOWTAPE_EXPERIMENTS_IMAGE_RUN_H_
