#include "compression/lossy_rd.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "nn/optim.h"

namespace flowtape::compression {
namespace {

// Delta_d = Delta w_d as a [D] tensor in `dtype`.
absl::StatusOr<Tensor> Steps(const LossyModel& m, double delta, int64_t d,
                             DType dtype) {
  if (!std::isfinite(delta) || !(delta > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate-distortion: Delta = ", delta));
  }
  std::vector<double> steps(d, delta);
  if (!m.step_scale.empty()) {
    if (static_cast<int64_t>(m.step_scale.size()) != d) {
      return absl::InvalidArgumentError(
          absl::StrCat("rate-distortion: ", m.step_scale.size(),
                       " step scales for ", d, " latents"));
    }
    for (int64_t j = 0; j < d; ++j) steps[j] *= m.step_scale[j];
  }
  return Tensor::FromVector(Shape{d}, steps, dtype);
}

}  // namespace

absl::StatusOr<std::shared_ptr<LearnedLatentPrior>> LearnedLatentPrior::Create(
    const LatentPrior& init) {
  const size_t d = init.mean.size();
  if (d == 0 || init.scale.size() != d)
    return absl::InvalidArgumentError(
        absl::StrCat("LearnedLatentPrior: want D >= 1 means and D scales, got ",
                     d, " means and ", init.scale.size(), " scales"));
  for (size_t j = 0; j < d; ++j) {
    if (!std::isfinite(init.mean[j]))
      return absl::InvalidArgumentError(
          absl::StrCat("LearnedLatentPrior: mean ", j, " = ", init.mean[j],
                       " is not finite"));
    if (!std::isfinite(init.scale[j]) || !(init.scale[j] > 0))
      return absl::InvalidArgumentError(
          absl::StrCat("LearnedLatentPrior: scale ", j, " = ", init.scale[j],
                       " must be finite and > 0"));
  }
  return std::shared_ptr<LearnedLatentPrior>(new LearnedLatentPrior(init));
}

LearnedLatentPrior::LearnedLatentPrior(const LatentPrior& init) {
  const int64_t d = static_cast<int64_t>(init.mean.size());
  FT_CHECK(static_cast<int64_t>(init.scale.size()) == d,
           "LearnedLatentPrior: ", d, " means, ", init.scale.size(), " scales");
  std::vector<double> log_scale(d);
  for (int64_t j = 0; j < d; ++j) log_scale[j] = std::log(init.scale[j]);
  mean_ = RegisterParameter("mean", Tensor::FromVector(Shape{d}, init.mean));
  log_scale_ =
      RegisterParameter("log_scale", Tensor::FromVector(Shape{d}, log_scale));
}

LatentPrior LearnedLatentPrior::Values() const {
  LatentPrior p;
  p.mean = mean_.ToVector();
  for (double v : log_scale_.ToVector()) p.scale.push_back(std::exp(v));
  return p;
}

Tensor LatentBits(const Tensor& t, const Tensor& mean, const Tensor& log_scale,
                  const Tensor& steps) {
  const Tensor inv_s = Exp(-log_scale);
  const Tensor centred = (t - mean) * inv_s;
  const Tensor half = steps * inv_s * 0.5;  // Delta_d / (2 s_d)
  const Tensor log_p = LogSigmoid(centred + half) + LogSigmoid(half - centred) +
                       Log(-Expm1(-2.0 * half));
  return Sum(log_p, 1) * (-1.0 / std::log(2.0));
}

absl::StatusOr<RateDistortionTerms> RateDistortion(
    const LossyModel& m, const LearnedLatentPrior& prior, const Tensor& pixels,
    double delta, QuantizationProxy proxy, Rng* rng) {
  if (m.flow == nullptr) {
    return absl::InvalidArgumentError("rate-distortion: no flow");
  }
  FT_RETURN_IF_ERROR(CheckPixels(m, pixels));
  const int64_t n = pixels.dim(0), d = m.image.numel();
  if (prior.mean().numel() != d) {
    return absl::InvalidArgumentError(absl::StrCat("rate-distortion: prior of ",
                                                   prior.mean().numel(),
                                                   " latents, ", d, " pixels"));
  }
  if (proxy == QuantizationProxy::kUniformNoise && rng == nullptr) {
    return absl::InvalidArgumentError(
        "rate-distortion: uniform-noise proxy without an rng");
  }
  const DType dtype = m.flow->dtype();
  FT_ASSIGN_OR_RETURN(const Tensor steps, Steps(m, delta, d, dtype));

  flows::FlowResult r = m.flow->Forward(FlowInput(m, pixels));
  FT_RETURN_IF_ERROR(r.status);
  const Tensor z = Reshape(r.value, {n, d});
  Tensor z_tilde;
  if (proxy == QuantizationProxy::kUniformNoise) {
    z_tilde = z + (Tensor::Rand(z.shape(), *rng, dtype) - 0.5) * steps;
  } else {
    // z_hat = Delta_d round(z / Delta_d), a constant.
    Tensor z_hat = z.Detach();
    VisitDType(dtype, [&](auto zero) {
      using T = decltype(zero);
      T* p = z_hat.mutable_data<T>();
      const T* s = steps.data<T>();
      for (int64_t i = 0; i < z_hat.numel(); ++i)
        p[i] = s[i % d] * std::round(p[i] / s[i % d]);
    });
    z_tilde = proxy == QuantizationProxy::kRound
                  ? z_hat
                  : z + (z_hat - z.Detach());  // value z_hat, dz~/dz = 1
  }
  FT_ASSIGN_OR_RETURN(const Tensor x, DecodeLatents(m, z_tilde));
  const Tensor err =
      Clamp(x, 0.0, m.levels - 1.0) - Reshape(Cast(pixels, dtype), {n, d});
  return RateDistortionTerms{
      LatentBits(z_tilde, prior.mean(), prior.log_scale(), steps),
      Sum(Square(err), 1)};
}

double MatchedLambda(double mse) { return 1.0 / (2.0 * std::log(2.0) * mse); }

absl::Status RdTrainOptions::Validate() const {
  auto bad = [](auto... parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("RdTrainOptions: ", parts...));
  };
  if (!std::isfinite(delta) || !(delta > 0)) return bad("delta = ", delta);
  if (!std::isfinite(lambda) || !(lambda >= 0)) return bad("lambda = ", lambda);
  if (!std::isfinite(lr) || !(lr > 0)) return bad("lr = ", lr);
  if (!std::isfinite(prior_lr) || !(prior_lr > 0)) {
    return bad("prior_lr = ", prior_lr);
  }
  if (!std::isfinite(clip) || !(clip > 0)) return bad("clip = ", clip);
  if (steps < 1) return bad("steps = ", steps);
  if (batch < 1) return bad("batch = ", batch);
  if (proxy == QuantizationProxy::kRound) {
    return bad("proxy kRound passes no gradient to the flow");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RdStep>> TrainRateDistortion(
    const LossyModel& m, LearnedLatentPrior& prior, const Tensor& pixels,
    const RdTrainOptions& o,
    const std::function<void(const RdStep&)>& on_step) {
  FT_RETURN_IF_ERROR(o.Validate());
  if (m.flow == nullptr) {
    return absl::InvalidArgumentError("rate-distortion: no flow");
  }
  FT_RETURN_IF_ERROR(CheckPixels(m, pixels));
  const std::vector<Tensor> flow_params = m.flow->Parameters();
  const std::vector<Tensor> prior_params = prior.Parameters();
  nn::AdamOptions flow_adam_options, prior_adam_options;
  flow_adam_options.lr = o.lr;
  prior_adam_options.lr = o.prior_lr;
  auto adam = nn::Adam::Create(flow_params, flow_adam_options).value();
  auto prior_adam = nn::Adam::Create(prior_params, prior_adam_options).value();
  std::vector<Tensor> all = flow_params;
  all.insert(all.end(), prior_params.begin(), prior_params.end());
  const double d = static_cast<double>(m.image.numel());
  Rng rng(o.seed);
  EnableGradScope grad;
  std::vector<RdStep> history;
  for (int64_t step = 1; step <= o.steps; ++step) {
    TapeScope scope;
    std::vector<int64_t> rows(o.batch);
    for (int64_t& i : rows) i = rng.UniformInt(pixels.dim(0));
    const Tensor batch = IndexSelect(pixels, 0, rows);
    FT_ASSIGN_OR_RETURN(
        const RateDistortionTerms t,
        RateDistortion(m, prior, batch, o.delta, o.proxy, &rng));
    const Tensor bpp = Mean(t.bits) * (1.0 / d);
    const Tensor mse = Mean(t.sq_error) * (1.0 / d);
    const Tensor loss = bpp + o.lambda * mse;
    const RdStep record{step, loss.item(), bpp.item(), mse.item()};
    if (!std::isfinite(record.loss)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "TrainRateDistortion: loss ", record.loss, " at step ", step));
    }
    adam->ZeroGrad();
    prior_adam->ZeroGrad();
    Backward(loss);
    nn::ClipGradNorm(all, o.clip);
    adam->Step();
    prior_adam->Step();
    history.push_back(record);
    if (on_step) on_step(record);
  }
  return history;
}

}  // namespace flowtape::compression
