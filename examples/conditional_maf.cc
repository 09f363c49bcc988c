// README's example: a conditional MAF fitted to a 5-D conditional Gaussian
// with TrainNll, then sampled, scored, checkpointed and reloaded.
//
// Data (rows are samples, L lower triangular):
//   c ~ N(0, I_2),  x | c ~ N(c A, L L^T),
//   E[-log p(x | c)] = (5/2) log(2 pi e) + sum_i log L_ii = 6.1864 nats,
// the closed form the trained model is held to: a model q has expected NLL
// 6.1864 + KL(p || q) >= 6.1864.
// Model: one MAF (a MADE 5 -> 64 -> 64 -> 10 that also feeds c to every
// hidden layer) over a standard normal, in float32; TrainNll runs 400 Adam
// steps (learning rate 1e-2, cosine decay) on 20000 training pairs,
// validating on 2000 and keeping the best state.
// Exits 0 iff (1) the NLL of 10000 fresh test pairs is within 0.1 nats of
// the closed form (their Monte Carlo error is 0.016 nats), (2) the mean of
// 10000 samples drawn given c = (1, -1) is within 0.1 of E[x | c] = c A in
// every coordinate, and (3) a fresh model loaded from the checkpoint gives
// bit-identical log-probs.
// Usage: conditional_maf [CHECKPOINT] (default maf.ckpt, in the current
// directory: under `bazel run` pass an absolute path); --help prints this.
#include <cmath>
#include <cstdio>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "flows/autoregressive.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/train.h"

using namespace flowtape;  // NOLINT: an example reads better without prefixes

// n pairs (x [n, 5], c [n, 2]) in float32; L^T has diagonal 1, .8, .6, 1.2, .7.
void Draw(int64_t n, Rng& rng, Tensor* x, Tensor* c) {
  const Tensor a =
      Tensor::FromVector({2, 5}, {1, 0, 1, -1, .5, 0, 1, 1, .5, -2});
  const Tensor lt = Tensor::FromVector(
      {5, 5}, {1, .5, -.3, .1,  0,  0, .8, .2, .4, -.5, 0, 0, .6, -.2, .3,  //
               0, 0,  0,   1.2, .1, 0, 0,  0,  0,  .7});
  *c = Tensor::Randn({n, 2}, rng);
  *x = Cast(MatMul(*c, a) + MatMul(Tensor::Randn({n, 5}, rng), lt), kFloat32);
  *c = Cast(*c, kFloat32);
}

absl::StatusOr<std::shared_ptr<flows::FlowModel>> MakeMaf(uint64_t seed) {
  Rng rng(seed);
  flows::AutoregressiveOptions maf;  // default transform: MAF's affine map
  maf.made.dim = 5;
  maf.made.hidden = {64, 64};
  maf.made.context_dim = 2;  // c feeds every hidden layer
  FT_ASSIGN_OR_RETURN(auto flow, flows::Autoregressive::Create(maf, rng));
  FT_ASSIGN_OR_RETURN(auto base, flows::StandardNormal::Create(Shape{5}));
  auto model = std::make_shared<flows::FlowModel>(base, flow);
  model->To(kFloat32);  // built in float64, trained in float32
  return model;
}

absl::Status Run(const std::string& path) {
  Rng rng(1);
  training::TrainData data;
  Draw(20000, rng, &data.train, &data.train_context);
  Draw(2000, rng, &data.val, &data.val_context);
  FT_ASSIGN_OR_RETURN(auto model, MakeMaf(/*seed=*/0));
  FT_ASSIGN_OR_RETURN(auto adam, nn::Adam::Create(*model, {/*lr=*/1e-2}));
  adam->set_schedule(nn::CosineAnnealingLr(1e-2, 400));  // decays to 0
  training::TrainOptions o;
  o.max_steps = 400;  // batches of 256
  o.log_every = 100;
  FT_RETURN_IF_ERROR(training::TrainNll(*model, *adam, data, o).status());
  NoGradScope no_grad;  // evaluation only from here

  Tensor x, c;  // score fresh pairs: -mean log q(x | c) in nats
  Draw(10000, rng, &x, &c);
  const double nll = model->Nll(x, c).item();
  const double h = 2.5 * std::log(2 * std::acos(-1.0)) + 2.5 +  // closed form
                   std::log(.8 * .6 * 1.2 * .7);
  // Sample given c = (1, -1): the mean should be c A.
  const Tensor c1 = Tensor::FromVector({1, 2}, {1, -1}, kFloat32);
  const Tensor mean =
      Mean(model->Sample(10000, rng, BroadcastTo(c1, {10000, 2})), 0);
  const Tensor want = Tensor::FromVector({5}, {1, -1, 0, -1.5, 2.5});
  const double worst = Max(Abs(Cast(mean, kFloat64) - want)).item();

  FT_ASSIGN_OR_RETURN(auto reloaded, MakeMaf(/*seed=*/7));
  FT_RETURN_IF_ERROR(nn::SaveCheckpoint(path, *model));
  FT_RETURN_IF_ERROR(nn::LoadCheckpoint(path, *reloaded));
  const bool same =  // bit for bit (log-probs of this model are never NaN)
      model->LogProb(x, c).ToVector() == reloaded->LogProb(x, c).ToVector();
  std::printf(
      "test NLL %.4f nats (closed form %.4f), sample mean error %.4f, "
      "reload %s\n",
      nll, h, worst, same ? "exact" : "DIFFERS");
  if (std::abs(nll - h) < 0.1 && worst < 0.1 && same) return absl::OkStatus();
  return absl::InternalError("the fitted model misses a target above");
}

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {  // --help, or bad use
    const bool help = argc == 2 && std::string(argv[1]) == "--help";
    std::fprintf(help ? stdout : stderr,
                 "usage: conditional_maf [CHECKPOINT]\n");
    return help ? 0 : 1;
  }
  const absl::Status s = Run(argc == 2 ? argv[1] : "maf.ckpt");
  if (!s.ok())
    std::fprintf(stderr, "conditional_maf: %s\n", s.ToString().c_str());
  return s.ok() ? 0 : 1;
}
