// Exploding inverses (Behrmann et al. 2021, "Understanding and mitigating
// exploding inverses in invertible neural networks") on flowtape's models:
// flows trained briefly on one image set, then asked to reconstruct
// in-distribution test images, the other image set and uniform noise.
// The paper's observation: affine couplings (RealNVP, Glow) reconstruct
// test images but their inverses can blow up off the data; additive
// couplings (NICE) and Lipschitz-constrained residual flows stay stable.
//
//   bazel run --config=opt //experiments:invertibility            # quick
//   bazel run --config=opt //experiments:invertibility -- --steps=2000
//
// Every flow is trained in float32 (the paper's precision; --float64 for
// float64) with the images experiment's small configuration, on logit-
// transformed dequantised pixels. For each evaluation set, the flow's input
// y = logit(alpha + (1 - 2 alpha) v) of n_eval images goes through
// flows::InvertibilityReport: |f^-1(f(y)) - y| per image in the model's
// dtype and in float64, and on n_lipschitz images the local Lipschitz
// constants Lip(f) and Lip(f^-1) (power iteration, 20 steps; flows with an
// analytic inverse only, unless --lipschitz_numeric). Prints one
// table row per flow and set, and writes invertibility_error.png:
// log10 of the per-image reconstruction error against the input norm |y|,
// one panel per flow, one colour per set.
//
// --scales=1,4,16 also evaluates every set at y k for each k (the flow's
// input scaled, so that |y| grows k-fold: the inputs far from the data where
// affine inverses blow up first); rows "<set> x<k>".
//
// Output in --out_dir (cli/cli.h): invertibility_error.png;
// results.json with config (the flags, and each flow's model spec under
// config.models.<flow>) and metrics.<flow>: the training ("best_val_nll",
// "steps", "diverged", "message", "check": the trained model's sample/score
// check, "ok" or why it fails) and under "sets" one entry per table row
// ("<set>[ x<k>]": "median_error", "max_error", "max_error_f64",
// "median_input_norm", "lipschitz_inverse" and "condition" (null where not
// estimated), "worst_layer", "worst_layer_digits_lost", "inverse_status");
// history.csv (each flow's training loss and validation NLL, run = the
// flow); and <flow>.ftm, each trained flow as a catalogue model file
// (models::LoadModel rebuilds it). A trained model that fails its check is
// kept and saved (the experiment measures such inverses): the check's
// message is in the metrics. Training that diverges stops at the NaN
// guard's restored state (training/nan_guard.h), recorded as "diverged".
#include "flows/invertibility.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/budget.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "data/image_setup.h"
#include "data/preprocess.h"
#include "io/json.h"
#include "models/image_flow.h"
#include "models/model_file.h"
#include "viz/figure.h"
#include "viz/scatter.h"

ABSL_FLAG(std::string, flows, "realnvp,glow,nice,resflow",
          "comma-separated zoo flows (realnvp, glow: affine couplings; nice: "
          "additive; resflow: residual)");
ABSL_FLAG(std::string, data, "mnist",
          "training set: mnist | fashion (the other one is out of "
          "distribution)");
ABSL_FLAG(int64_t, steps, 100, "optimizer steps per flow");
ABSL_FLAG(int64_t, n_train, 10000, "training images used");
ABSL_FLAG(int64_t, n_eval, 128, "images per evaluation set");
ABSL_FLAG(int64_t, n_lipschitz, 4, "images per set for Lipschitz estimates");
ABSL_FLAG(bool, lipschitz_numeric, false,
          "also estimate Lipschitz constants of flows with a numeric inverse "
          "(resflow: slow, D VJPs per inverse pass)");
ABSL_FLAG(std::string, scales, "1",
          "comma-separated factors k: every set is also evaluated at y k");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

namespace flowtape::experiments {
namespace {

// The flow's input for integer pixels: dequantised (fixed noise), logit.
Tensor FlowInput(const models::ImageFlow& f, const Tensor& pixels,
                 uint64_t seed) {
  NoGradScope no_grad;
  Rng rng(seed);
  Tensor y =
      data::LogitTransform(data::Dequantize(pixels, f.levels, rng), f.alpha).y;
  if (f.flatten) y = Reshape(y, {y.dim(0), y.numel() / y.dim(0)});
  return y.Detach();
}

double Median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

std::string Sci(double v) { return absl::StrFormat("%.1e", v); }

struct EvalSet {
  std::string name;
  Tensor pixels;  // [n, 1, 28, 28], integer levels
};

// Every (set, k) pair, sets in order, scales in order within a set.
std::vector<std::pair<EvalSet, double>> SetsAtScales(
    const std::vector<EvalSet>& sets, const std::vector<double>& scales) {
  std::vector<std::pair<EvalSet, double>> out;
  for (const EvalSet& set : sets)
    for (double k : scales) out.push_back({set, k});
  return out;
}

// One panel per flow, all in `box` (widened a little) when it is proper.
viz::Figure Figure(const viz::FigureOptions& fo,
                   std::vector<viz::Scatter> panels, const viz::Box& box) {
  viz::Figure figure(fo);
  for (viz::Scatter& panel : panels) {
    if (box.xmin < box.xmax && box.ymin < box.ymax)
      panel.box =
          viz::Box{box.xmin - 2, box.xmax + 2, box.ymin - 0.2, box.ymax + 0.2};
    figure.Add(panel);
  }
  return figure;
}

// models::TrainImageFlow, except that a trained model whose samples or
// scores are not finite is kept, its failed check in *check: this experiment
// measures exactly such inverses.
absl::StatusOr<training::TrainResult> TrainKeepingUnusable(
    const models::ImageFlow& f, const Tensor& pixels,
    const models::ImageRunConfig& c, Rng& rng, absl::Status* check,
    int64_t* log_every) {
  const training::TrainData d = models::SplitImages(pixels, Tensor(), c, rng);
  {
    const int64_t b = std::min(c.batch, d.train.dim(0));
    Rng noise(c.seed);
    const absl::Status init = f.model->InitializeFromData(
        FlowInput(f, Narrow(d.train, 0, 0, b), c.seed), Tensor(), &noise);
    if (!init.ok()) return init;
  }
  FT_ASSIGN_OR_RETURN(std::shared_ptr<nn::Adam> adam, models::ImageAdam(f, c));
  training::TrainOptions o = models::ImageTrainOptions(f, d, c);
  *log_every = o.log_every;
  o.check_model = [strict = o.check_model, check](Rng& r) {
    *check = strict(r);
    return absl::OkStatus();
  };
  return training::TrainNll(*f.model, f.AsNllFn(), *adam, d, o);
}

absl::Status Run(cli::Experiment& ex) {
  const std::vector<std::string> flows =
      absl::StrSplit(absl::GetFlag(FLAGS_flows), ',', absl::SkipEmpty());
  const std::string train_name = absl::GetFlag(FLAGS_data);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t n_train = absl::GetFlag(FLAGS_n_train);
  const int64_t n_eval = absl::GetFlag(FLAGS_n_eval);
  const int64_t n_lip = absl::GetFlag(FLAGS_n_lipschitz);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  FT_ASSIGN_OR_RETURN(const std::vector<double> scales,
                      cli::ParseDecimalList(
                          "scales", absl::GetFlag(FLAGS_scales), "in (0, 1e6]",
                          [](double k) { return k > 0 && k <= 1e6; }));
  if (absl::Status s = cli::CheckFlags({
          {"flows", absl::GetFlag(FLAGS_flows), !flows.empty(),
           "a non-empty list"},
          {"data", train_name, train_name == "mnist" || train_name == "fashion",
           "mnist or fashion"},
          {"steps", steps, steps > 0, "> 0"},
          {"n_train", n_train, n_train >= 20, ">= 20"},
          {"n_eval", n_eval, n_eval > 0, "> 0"},
          {"n_lipschitz", n_lip, n_lip >= 0 && n_lip <= n_eval,
           "in [0, n_eval]"},
      });
      !s.ok())
    return s;
  const std::string other = train_name == "mnist" ? "fashion" : "mnist";
  const DType dtype = ex.dtype();
  ex.set_seed(seed);
  ex.config()["flows"] = flows;
  ex.config()["data"] = train_name;
  ex.config()["ood_data"] = other;
  ex.config()["steps"] = steps;
  ex.config()["n_train"] = n_train;
  ex.config()["n_eval"] = n_eval;
  ex.config()["n_lipschitz"] = n_lip;
  ex.config()["lipschitz_numeric"] = absl::GetFlag(FLAGS_lipschitz_numeric);
  ex.config()["scales"] = scales;
  ex.config()["power_iterations"] = 20;
  ex.SingleThreaded("each flow trains through models::TrainImageFlow");
  for (const std::string& flow : flows) {
    models::ImageRunConfig c = models::DefaultImageConfig(flow, false);
    if (absl::Status s = cli::CheckRunMemory(
            cli::ImageFlowFootprint(flow, c.zoo.layers, c.zoo.levels,
                                    c.zoo.depth, c.zoo.channels, c.zoo.hidden,
                                    0, 1, 28, 28, c.batch),
            absl::StrCat("--flows=", flow));
        !s.ok())
      return s;
  }

  auto train = data::LoadImageSetOrSetup(train_name, "train");
  if (!train.ok()) return train.status();
  auto test = data::LoadImageSetOrSetup(train_name, "test");
  if (!test.ok()) return test.status();
  auto ood = data::LoadImageSetOrSetup(other, "test");
  if (!ood.ok()) return ood.status();
  const Shape image{1, 28, 28};
  for (auto [set, what, min_n] :
       {std::make_tuple(&*train, "training set", int64_t{20}),
        std::make_tuple(&*test, "test set", n_eval),
        std::make_tuple(&*ood, "other test set", n_eval)})
    if (absl::Status s = cli::CheckImageSet(*set, what, image, 10, min_n);
        !s.ok())
      return s;
  Rng noise_rng(seed, 99);
  Tensor noise = Tensor::Zeros({n_eval, 1, 28, 28});
  for (int64_t i = 0; i < noise.numel(); ++i)
    noise.mutable_data<double>()[i] = noise_rng.UniformInt(256);
  const std::vector<EvalSet> sets = {
      {train_name + " test", Narrow(test->images, 0, 0, n_eval)},
      {other + " test", Narrow(ood->images, 0, 0, n_eval)},
      {"uniform noise", noise}};

  std::cout << absl::StrFormat(
      "trained on %s (%d steps, %s), %d images per set; errors are "
      "|f^-1(f(y)) - y| per image, y the logit input\n",
      train_name, steps, DTypeName(dtype), n_eval);
  std::cout << absl::StrFormat("%-8s %-18s %9s %9s %9s %9s %9s %9s  %s\n",
                               "flow", "set", "median", "max", "max f64",
                               "|y| med", "Lip(f^-1)", "condition",
                               "worst layer (digits lost)");
  viz::FigureOptions fo;
  fo.cols = std::min<int>(2, flows.size());
  fo.title = absl::StrFormat("trained on %s, %s", train_name, DTypeName(dtype));
  // One box for every panel, so that the flows compare at a glance.
  std::vector<viz::Scatter> panels;
  viz::Box box{INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (const std::string& flow : flows) {
    models::ImageRunConfig c = models::DefaultImageConfig(flow, false);
    c.steps = steps;
    c.n_train = n_train;
    c.seed = seed;
    c.zoo.dtype = dtype;
    Rng rng(seed);
    auto f = models::MakeImageFlow(flow, c.zoo, image, 256, rng);
    if (!f.ok()) return f.status();
    absl::Status check;
    int64_t log_every = 0;
    auto r =
        TrainKeepingUnusable(*f, train->images, c, rng, &check, &log_every);
    if (!r.ok()) return r.status();
    if (!check.ok())
      std::cout << flow << ": the trained model fails its check (kept): "
                << check.message() << "\n";
    if (r->diverged) std::cout << flow << ": " << r->message << "\n";
    ex.history().AddTraining(*r, log_every, flow);
    io::Json& m = ex.metrics()[flow];
    m["best_val_nll"] = r->best_val_nll;
    m["steps"] = r->steps;
    m["diverged"] = r->diverged;
    m["message"] = r->message;
    m["check"] = check.ok() ? "ok" : std::string(check.message());
    ex.timings()[flow + "_train_s"] = r->seconds;
    models::ModelSpec spec{flow, c.zoo, c.zoo.dtype};
    spec.config.event = f->flatten ? Shape{image.numel()} : image;
    FT_ASSIGN_OR_RETURN(ex.config()["models"][flow],
                        io::ParseJson(models::ModelSpecToJson(spec), flow));
    FT_RETURN_IF_ERROR(
        models::SaveModel(ex.Output(flow + ".ftm"), spec, *f->model));
    viz::Scatter panel;
    panel.title = absl::StrFormat("%s (val %.0f nats)%s", flow, r->best_val_nll,
                                  check.ok() ? "" : ", samples not finite");
    panel.xlabel = "|y| (input norm)";
    panel.ylabel = "log10 |f^-1(f(y)) - y|";
    panel.equal_aspect = false;
    for (const auto& [set, k] : SetsAtScales(sets, scales)) {
      const Tensor y = FlowInput(*f, set.pixels, seed + 1) * k;
      const std::string set_name =
          k == 1 ? set.name : absl::StrCat(set.name, " x", k);
      flows::InvertibilityOptions io;
      io.lipschitz = false;
      io.seed = seed;
      auto rep = flows::InvertibilityReport(*f->model->flow(), y, io);
      if (!rep.ok()) return rep.status();
      std::string lip_inv = "-", condition = "-";
      io::Json lip_json = nullptr, condition_json = nullptr;
      // A numeric inverse records Newton steps with per-sample Jacobians
      // (resflow.h): D VJPs per pass, too slow for 784-D power iteration.
      if (n_lip > 0 && (f->model->flow()->analytic_inverse() ||
                        absl::GetFlag(FLAGS_lipschitz_numeric))) {
        io.lipschitz = true;
        io.per_layer = false;
        io.power_iterations = 20;
        auto lip = flows::InvertibilityReport(*f->model->flow(),
                                              Narrow(y, 0, 0, n_lip), io);
        if (!lip.ok()) return lip.status();
        lip_inv = Sci(lip->model.max_inverse_lipschitz);
        condition = Sci(lip->model.max_condition);
        lip_json = lip->model.max_inverse_lipschitz;
        condition_json = lip->model.max_condition;
      }
      const std::vector<double>& err = rep->model.native.forward.per_sample_max;
      std::vector<double> norm(y.dim(0), 0.0), pts;
      const std::vector<double> v = y.ToVector();
      const int64_t d = y.numel() / y.dim(0);
      for (int64_t i = 0; i < y.dim(0); ++i) {
        for (int64_t k = i * d; k < (i + 1) * d; ++k) norm[i] += v[k] * v[k];
        norm[i] = std::sqrt(norm[i]);
        pts.push_back(norm[i]);
        pts.push_back(std::log10(std::max(err[i], 1e-30)));
        if (std::isfinite(pts.back())) {
          box.xmin = std::min(box.xmin, norm[i]);
          box.xmax = std::max(box.xmax, norm[i]);
          box.ymin = std::min(box.ymin, pts.back());
          box.ymax = std::max(box.ymax, pts.back());
        }
      }
      std::string worst = "-";
      io::Json worst_name = nullptr, worst_digits = nullptr;
      if (!rep->worst_layers.empty()) {
        const auto& l = rep->layers[rep->worst_layers[0]];
        worst = absl::StrFormat("%s (%.1f)", l.name, l.native.max_digits_lost);
        worst_name = l.name;
        worst_digits = l.native.max_digits_lost;
      }
      m["sets"][set_name] = {
          {"median_error", Median(err)},
          {"max_error", rep->model.native.forward.max},
          {"max_error_f64", rep->model.float64.forward.max},
          {"median_input_norm", Median(norm)},
          {"lipschitz_inverse", lip_json},
          {"condition", condition_json},
          {"worst_layer", worst_name},
          {"worst_layer_digits_lost", worst_digits},
          {"inverse_status",
           rep->model.native.status.ok()
               ? std::string("ok")
               : std::string(rep->model.native.status.message())}};
      std::cout << absl::StrFormat(
          "%-8s %-18s %9s %9s %9s %9.1f %9s %9s  %s%s\n", flow, set_name,
          Sci(Median(err)), Sci(rep->model.native.forward.max),
          Sci(rep->model.float64.forward.max), Median(norm), lip_inv, condition,
          worst,
          rep->model.native.status.ok()
              ? ""
              : absl::StrCat("  [", rep->model.native.status.message(), "]"));
      std::cout.flush();
      panel.series.push_back(
          {set_name, Tensor::FromVector({y.dim(0), 2}, pts), {}, 2.0, 0.6});
    }
    panels.push_back(panel);
    Tape::Get().Reset();
    // The figure so far after every flow: a long run stopped early keeps it.
    if (absl::Status s =
            Figure(fo, panels, box)
                .Write(absl::StrCat(ex.out_dir(), "/invertibility_error.png"));
        !s.ok())
      return s;
  }
  return ex.WriteFigure(Figure(fo, panels, box), "invertibility_error.png");
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"invertibility",
       "Exploding inverses (Behrmann et al. 2021): affine vs additive "
       "couplings vs residual flows, reconstruction error on test images, the "
       "other data set and uniform noise.\n"
       "  ./bazelw run --config=opt //experiments:invertibility -- --steps=100",
       flowtape::kFloat32},
      argc, argv, flowtape::experiments::Run);
}
