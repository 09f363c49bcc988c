// Flows on dequantised, logit-transformed images (shared by the images and
// ood experiments).
//
// Pipeline for integer pixels k in {0..L-1}, [N, C, H, W]:
//   v = (k + u) / L  (u ~ U[0,1), fresh per minibatch; a fixed seed when
//   evaluating),  y = logit(alpha + (1 - 2 alpha) v)  with log-det ld(v),
//   nll_v = -log p_Y(y) - ld(v)      (nats per image, density of v on [0,1)^D)
//   bits/dim = (nll_v + D log L) / (D log 2)          (data/preprocess.h).
// Vector flows (MAF) see y flattened to [N, C*H*W]; image flows the image.
// The transform runs in the model's dtype.
#ifndef FLOWTAPE_MODELS_IMAGE_FLOW_H_
#define FLOWTAPE_MODELS_IMAGE_FLOW_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/flow_model.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "training/train.h"

namespace flowtape::models {

struct ImageFlow {
  std::shared_ptr<flows::FlowModel> model;
  Shape image;       // [C, H, W]
  bool flatten;      // vector flow: model sees [N, C*H*W]
  int levels = 256;  // pixel levels L
  double alpha = 0.05;

  // The model's input y for integer images (dequantised with fresh noise
  // from `rng`, logit-transformed, in the model's dtype, flattened for
  // vector flows): what flow matching regresses the field on.
  Tensor Input(const Tensor& pixels, Rng& rng) const;
  // Mean nll_v of a batch of integer images (differentiable); `context`
  // [N, K] for class-conditional models, else undefined.
  Tensor Nll(const Tensor& pixels, Rng& rng,
             const Tensor& context = Tensor()) const;
  // Per-image bits/dim, without recording, in chunks of `batch`.
  std::vector<double> BitsPerDim(const Tensor& pixels, int64_t batch,
                                 const Tensor& context = Tensor(),
                                 uint64_t seed = 777) const;
  // n samples mapped back to [0, 1] pixel intensities, [n, C, H, W].
  Tensor SampleImages(int64_t n, Rng& rng,
                      const Tensor& context = Tensor()) const;
  training::NllFn AsNllFn() const;
};

// One-hot rows [N, k] of integer labels.
Tensor OneHot(const std::vector<int>& labels, int k);

// Run configuration of the image experiments.
struct ImageRunConfig {
  ModelConfig zoo;
  int64_t steps = 1000, batch = 64, n_train = 20000, n_test = 2000;
  double lr = 1e-3;        // Adam, linear warm-up then cosine decay
  std::string checkpoint;  // saved every 500 steps when set
  // Data parallel: TrainOptions::communicator (nullptr = one process).
  parallel::Communicator* communicator = nullptr;
  uint64_t seed = 0;
  // InvalidArgument naming the field unless steps, batch, n_train >= 1,
  // n_test >= 0 and lr is finite and > 0 (the model config is checked by
  // MakeModel).
  absl::Status Validate() const;
};
// Small (default): minutes on 2 cores; ffjord and cfm (the matched field's
// CNF, trained by flow matching) get the same shorter run. Paper: the model
// sizes of RealNVP (Dinh et al. 2017), Glow (Kingma & Dhariwal 2018) and MAF
// (Papamakarios et al. 2017) for MNIST, full training set, 100k steps.
ImageRunConfig DefaultImageConfig(const std::string& flow, bool paper);

// The pieces of TrainImageFlow, shared with data-parallel image runs:
// `pixels` (and `context`, if defined) shuffled together; the first
// min(c.n_train, 90%) rows train, the next max(n_train / 10, 1) validate.
training::TrainData SplitImages(const Tensor& pixels, const Tensor& context,
                                const ImageRunConfig& c, Rng& rng);
// Adam at c.lr with a linear warm-up (min(200, steps / 10)) into cosine decay;
// c.Validate()'s status if c is invalid.
absl::StatusOr<std::shared_ptr<nn::Adam>> ImageAdam(const ImageFlow& f,
                                                    const ImageRunConfig& c);
// TrainNll's options for c, with a final model check through the image
// pipeline (samples and the nll of training images finite). `f` and `d`
// must outlive training.
training::TrainOptions ImageTrainOptions(const ImageFlow& f,
                                         const training::TrainData& d,
                                         const ImageRunConfig& c);

// Trains on n_train images of a shuffled `pixels` set (the next n_train / 10
// are the validation set), printing progress to stderr, after the model's
// data-dependent initialisation pass (flows/flow.h) on the first batch.
// `context` [N, K] (e.g. OneHot(labels)) is shuffled with the images; undefined
// if unconditional. c.Validate()'s status if c is invalid.
absl::StatusOr<training::TrainResult> TrainImageFlow(
    const ImageFlow& f, const Tensor& pixels, const ImageRunConfig& c, Rng& rng,
    const Tensor& context = Tensor());

// A zoo flow on images of shape [C, H, W]: the image entry if the family has
// one, else the vector entry on flattened images.
absl::StatusOr<ImageFlow> MakeImageFlow(const std::string& name,
                                        ModelConfig config, const Shape& image,
                                        int levels, Rng& rng);

}  // namespace flowtape::models

#endif  // FLOWTAPE_MODELS_IMAGE_FLOW_H_
