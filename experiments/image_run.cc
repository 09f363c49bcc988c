#include "experiments/image_run.h"

#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "flows/cnf/mixture_baseline_velocity.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "flows/matching/path.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/train_flow_matching.h"

namespace flowtape::experiments {
namespace {

// The OT path's sigma_min: the zoo cfm field's own (its mixture baseline
// is the marginal field of that path), else 1e-4.
double FieldSigmaMin(const flows::cnf::CnfDynamics& velocity) {
  const auto* mix =
      dynamic_cast<const flows::cnf::MixtureBaselineVelocity*>(&velocity);
  return mix == nullptr ? 1e-4 : mix->sigma_min();
}

// Per pixel, two components of the transformed images y = f.Input(pixels)
// (the first 10000 rows, one dequantisation draw): the background (pixel
// level 0) and the other levels, each with its frequency, mean and
// variance (floored at 1e-6); a component with fewer than 2 rows gets
// weight 1e-6, the pixel's mean and variance 1.
absl::Status FitPixelMixture(const models::ImageFlow& f, const Tensor& pixels,
                             uint64_t seed,
                             flows::cnf::MixtureBaselineVelocity& field) {
  NoGradScope no_grad;
  const int64_t n = std::min<int64_t>(pixels.dim(0), 10000);
  Tensor raw = Narrow(pixels, 0, 0, n);
  Rng rng(seed + 17);
  const Tensor y = Cast(f.Input(raw, rng), kFloat64);
  const int64_t d = y.dim(1);
  raw = Reshape(Cast(raw, kFloat64), {n, d});
  std::vector<double> w(2 * d), m(2 * d), q(2 * d);
  for (int64_t k = 0; k < d; ++k) {
    double count[2] = {0, 0}, s1[2] = {0, 0}, s2[2] = {0, 0}, all = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int j = raw[i * d + k] == 0 ? 0 : 1;
      const double v = y[i * d + k];
      count[j] += 1, s1[j] += v, s2[j] += v * v, all += v;
    }
    for (int j = 0; j < 2; ++j) {
      const int64_t at = j * d + k;
      if (count[j] < 2) {
        w[at] = 1e-6, m[at] = all / n, q[at] = 1;
        continue;
      }
      w[at] = count[j] / n;
      m[at] = s1[j] / count[j];
      q[at] = std::max(s2[j] / count[j] - m[at] * m[at], 1e-6);
    }
  }
  return field.SetMixture(Tensor::FromVector({2, d}, w),
                          Tensor::FromVector({2, d}, m),
                          Tensor::FromVector({2, d}, q));
}

// The flow-matching objective of a matched field's CNF (zoo "cfm"): the OT
// path with the field's sigma_min, independent pairs. A mixture-baseline
// field is first fitted to the transformed images of `f`.
absl::StatusOr<std::shared_ptr<flows::matching::FlowMatching>>
MakeImageObjective(const models::ImageFlow& f,
                   std::shared_ptr<flows::cnf::CnfDynamics> velocity,
                   const models::ImageRunConfig& c,
                   const training::TrainData& d) {
  if (auto* mix =
          dynamic_cast<flows::cnf::MixtureBaselineVelocity*>(velocity.get())) {
    FT_RETURN_IF_ERROR(FitPixelMixture(f, d.train, c.seed, *mix));
    // Training starts from the mixture's own flow (2.04 bits/dim on MNIST):
    // a random residual would first have to unlearn its noise.
    if (auto* net =
            dynamic_cast<flows::cnf::ConcatSquashNet*>(mix->residual().get()))
      net->ZeroOutput();
  }
  FT_ASSIGN_OR_RETURN(auto path, flows::matching::AffinePath::OptimalTransport(
                                     FieldSigmaMin(*velocity)));
  return flows::matching::FlowMatching::Create(std::move(velocity), path);
}

// A flow whose model is a matched field's CNF: conditional flow matching
// regresses the field on the transformed images; validation by the
// pipeline's NLL. Replicas on the experiment's threads or mpirun ranks
// (Experiment::TrainFlowMatching): each dequantises every image of the
// global batch from the shared stream and keeps its rows
// (FlowMatching::LossOfRows), so the run does not depend on the replica
// count. This process's flow (rank 0's on threads) lands in `out` (the
// final check, through ImageTrainOptions, sees it).
absl::StatusOr<training::TrainResult> TrainImagesByFlowMatching(
    cli::Experiment& ex, models::ImageFlow& out,
    const std::function<absl::StatusOr<models::ImageFlow>()>& make_flow,
    const models::ImageRunConfig& c, const training::TrainData& d) {
  std::mutex mu;
  training::FlowMatchingReplicaFactory make =
      [&](int rank) -> absl::StatusOr<training::FlowMatchingReplica> {
    FT_ASSIGN_OR_RETURN(models::ImageFlow f, make_flow());
    std::shared_ptr<flows::cnf::CnfDynamics> velocity =
        flows::matching::MatchedVelocity(*f.model->flow());
    if (velocity == nullptr)
      return absl::InternalError("flow matching: the flow has no field");
    FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::matching::FlowMatching> fm,
                        MakeImageObjective(f, velocity, c, d));
    if (rank == ex.rank()) {
      std::lock_guard<std::mutex> lock(mu);
      out = f;
    }
    training::ShardedFlowMatchingLossFn loss =
        [f, fm](const Tensor& pixels, const Tensor& ctx, Rng& rng,
                int64_t begin, int64_t end) {
          return fm->LossOfRows(f.Input(pixels, rng), ctx, rng, begin, end);
        };
    // By value: f.AsNllFn() would refer to this local.
    training::NllFn nll = [f](const Tensor& x, const Tensor& ctx, Rng& r) {
      return f.Nll(x, r, ctx);
    };
    FT_ASSIGN_OR_RETURN(std::shared_ptr<nn::Adam> adam,
                        models::ImageAdam(f, c));
    return training::FlowMatchingReplica{f.model, nll, loss, adam, nullptr};
  };
  training::FlowMatchingTrainOptions o;
  static_cast<training::TrainOptions&>(o) =
      models::ImageTrainOptions(out, d, c);
  o.communicator = nullptr;
  FT_ASSIGN_OR_RETURN(training::ThreadedFlowMatching run,
                      ex.TrainFlowMatching(make, d, o));
  return run.result;
}

}  // namespace

absl::StatusOr<ImageRun> TrainImages(cli::Experiment& ex,
                                     const std::string& flow,
                                     const models::ImageRunConfig& c,
                                     const Shape& image, int levels,
                                     double alpha, const Tensor& pixels,
                                     Rng& rng, const Tensor& context) {
  const training::TrainData d = models::SplitImages(pixels, context, c, rng);
  const int64_t n_train = d.train.dim(0), n_val = d.val.dim(0);
  auto make_flow = [&]() -> absl::StatusOr<models::ImageFlow> {
    Rng init(c.seed);
    FT_ASSIGN_OR_RETURN(
        models::ImageFlow f,
        models::MakeImageFlow(flow, c.zoo, image, levels, init));
    f.alpha = alpha;
    return f;
  };
  ImageRun out;
  FT_ASSIGN_OR_RETURN(out.flow, make_flow());
  int64_t log_every = 0;
  if (flows::matching::MatchedVelocity(*out.flow.model->flow()) != nullptr) {
    std::cerr << absl::StrFormat(
        "training %s by flow matching: %d train / %d val images, %d steps of "
        "%d, %d thread(s)\n",
        flow, n_train, n_val, c.steps, c.batch, ex.threads());
    FT_ASSIGN_OR_RETURN(
        out.result, TrainImagesByFlowMatching(ex, out.flow, make_flow, c, d));
    log_every = models::ImageTrainOptions(out.flow, d, c).log_every;
  } else {
    std::mutex mu;
    auto make = [&](int rank) -> absl::StatusOr<training::Replica> {
      FT_ASSIGN_OR_RETURN(models::ImageFlow f, make_flow());
      FT_ASSIGN_OR_RETURN(std::shared_ptr<nn::Adam> adam,
                          models::ImageAdam(f, c));
      if (rank == ex.rank()) {
        std::lock_guard<std::mutex> lock(mu);
        out.flow = f;
      }
      training::NllFn nll = [f](const Tensor& x, const Tensor& ctx, Rng& r) {
        return f.Nll(x, r, ctx);
      };
      return training::Replica{f.model, nll, adam};
    };
    // This process's model (rank 0's on threads), set by `make` before
    // training starts, is the one the final check sees.
    training::TrainOptions o = models::ImageTrainOptions(out.flow, d, c);
    log_every = o.log_every;
    std::cerr << absl::StrFormat(
        "training %s: %d train / %d val images, %d steps of %d, %d "
        "thread(s)\n",
        flow, n_train, n_val, c.steps, c.batch, ex.threads());
    FT_ASSIGN_OR_RETURN(training::ThreadedTraining run, ex.Train(make, d, o));
    out.result = run.result;
  }
  ex.history().AddTraining(out.result, log_every, flow);
  out.spec = {flow, c.zoo, c.zoo.dtype};
  out.spec.config.event =
      out.flow.flatten ? Shape{image.numel()} : Shape(image);
  FT_ASSIGN_OR_RETURN(
      ex.config()["model"],
      io::ParseJson(models::ModelSpecToJson(out.spec), "model spec"));
  ex.config()["run"] = {{"steps", c.steps},   {"batch", c.batch},
                        {"n_train", n_train}, {"n_val", n_val},
                        {"lr", c.lr},         {"alpha", alpha}};
  return out;
}

}  // namespace flowtape::experiments
