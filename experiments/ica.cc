// ICA as a K = 1 flow: unmix synthetic "audio-like" signals.
//
//   ./bazelw run //experiments:ica [-- --steps=600 --dtype=f64]
//
// Sources s (N samples x 3): a Laplace "speech" track, a 440 Hz sine and a
// 150 Hz sawtooth, mixed as x = s M' with a random M. Two fits of the linear
// flow z = A (x - mean), full batch, in --dtype:
//   1. Infomax (logistic base): right for super-Gaussian sources only;
//   2. a learnable factorized-mixture base (independent factor analysis),
//      which also fits the sub-Gaussian sine and sawtooth.
// Prints the Amari index of A M (0 = perfect separation) and, per source,
// the best |correlation| with a recovered component. Writes to --out_dir
// (cli/cli.h) infomax_loss.png, ifa_loss.png (NLL per step), the
// fitted densities as model files infomax.ftm and ifa.ftm (catalogue family
// "ica", the data mean folded into the base: models/ica_model.h; load with
// models::LoadModel), results.json (their specs under config.models) and
// history.csv (run "infomax" / "ifa").
#include "flows/ica.h"

#include <cmath>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "models/ica_model.h"
#include "models/model_file.h"

ABSL_FLAG(int, steps, 600, "Adam steps per fit (full batch)");
ABSL_FLAG(int64_t, n, 4000, "samples (8 kHz)");
ABSL_FLAG(uint64_t, seed, 1, "random seed (sources and mixing matrix)");

using namespace flowtape;  // NOLINT: a demo reads better without prefixes

absl::Status Run(cli::Experiment& ex) {
  const int steps = absl::GetFlag(FLAGS_steps);
  const int64_t n = absl::GetFlag(FLAGS_n), d = 3;
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"steps", steps, steps > 0, "> 0"},
      {"n", n, n > d && n <= 100000000, "in (3, 1e8]"},
  }));
  ex.SingleThreaded("the ICA fits are full-batch");
  // Full batch: the tape holds every sample's values (the mixture base's
  // K = 3 components cost about 8 per coordinate and component); the
  // sources, their mix, its centred copy and the recovered sources are data.
  cli::Footprint fp;
  fp.parameters = d * d + d + 3.0 * 3 * d;
  fp.activations_per_example = d * (4.0 + 8.0 * 3);
  fp.batch = static_cast<double>(n);
  fp.data_values = 5.0 * n * d;
  FT_RETURN_IF_ERROR(cli::CheckRunMemory(fp, absl::StrCat("--n=", n)));
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  Rng rng(absl::GetFlag(FLAGS_seed));
  Tensor laplace = flows::LaplaceSources(n, 1, rng);
  Tensor s = Tensor::Empty({n, d});
  double* ps = s.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / 8000.0;  // 8 kHz sampling
    ps[i * d + 0] = laplace[i];
    ps[i * d + 1] = std::sqrt(2.0) * std::sin(2 * M_PI * 440.0 * t);
    const double phase = 150.0 * t - std::floor(150.0 * t);
    ps[i * d + 2] = std::sqrt(3.0) * (2.0 * phase - 1.0);
  }
  Tensor m = Tensor::Randn({d, d}, rng);
  Tensor x = Cast(MatMulT(s, m, false, true), ex.dtype());

  for (int k : {0, 3}) {
    const std::string run = k == 0 ? "infomax" : "ifa";
    flows::IcaOptions opt;
    opt.mixture_components = k;
    opt.steps = steps;
    FT_ASSIGN_OR_RETURN(flows::IcaResult fit, flows::FitInfomaxIca(x, opt));
    training::TrainResult losses;
    losses.losses = fit.nll;
    ex.history().AddTraining(losses, std::max(1, steps / 20), run);
    const double amari =
        flows::AmariIndex(MatMul(Cast(fit.unmixing, kFloat64), m));
    std::cout << absl::StrFormat(
        "%-34s final NLL %.4f nats, Amari index %.4f\n",
        k == 0 ? "Infomax (logistic base):" : "IFA (3-component mixture base):",
        fit.nll.back(), amari);
    io::Json& metrics = ex.metrics()[run];
    metrics["final_nll"] = fit.nll.back();
    metrics["amari_index"] = amari;
    Tensor sources = Cast(fit.sources, kFloat64);
    const char* names[] = {"laplace", "sine", "sawtooth"};
    for (int64_t j = 0; j < d; ++j) {
      double best = 0;
      for (int64_t c = 0; c < d; ++c) {
        double sxy = 0, sxx = 0, syy = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double a = ps[i * d + j], b = sources.data<double>()[i * d + c];
          sxy += a * b, sxx += a * a, syy += b * b;
        }
        best = std::max(best, std::fabs(sxy) / std::sqrt(sxx * syy));
      }
      metrics["best_abs_corr"][names[j]] = best;
      std::cout << absl::StrFormat("    %-9s best |corr| %.4f\n", names[j],
                                   best);
    }
    FT_ASSIGN_OR_RETURN(models::SpecifiedModel fitted, models::IcaModel(fit));
    FT_ASSIGN_OR_RETURN(
        ex.config()["models"][run],
        io::ParseJson(models::ModelSpecToJson(fitted.spec), "spec"));
    FT_RETURN_IF_ERROR(
        models::SaveModel(ex.Output(run + ".ftm"), fitted.spec, *fitted.model));
    FT_RETURN_IF_ERROR(ex.WriteFigure(
        cli::LossFigure(losses, run == "ifa" ? "IFA" : "Infomax ICA"),
        run + "_loss.png"));
  }
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  return cli::Main(
      {"ica",
       "Infomax ICA and IFA as a K = 1 linear flow on audio-like sources: "
       "Amari index, per-source correlation.\n"
       "  ./bazelw run //experiments:ica -- --steps=600",
       kFloat32},
      argc, argv, Run);
}
