// Lossy compression with a normalizing flow (Helminger et al. 2021) against
// JPEG on MNIST / Fashion-MNIST: bits per pixel vs PSNR.
//
// The flow is a catalogue image flow (default RealNVP, models/image_flow.h)
// trained by NLL on dequantised, logit-transformed pixels (or loaded with
// --model from a model.ftm of //experiments:images; a model whose event is
// not [784] or [1, 28, 28], or that takes a context, is InvalidArgument
// before any data is read). The codec
// (compression/lossy.h) quantises its latents z = f(logit(...)) and
// rANS-codes them under a per-dimension logistic fitted to the latents of
// --n_fit training images, in two variants: one step Delta for every latent
// ("flow"), and steps Delta w_d with w_d proportional to 1 / |dx/dz_d|
// estimated on 1000 training images ("flow_w", SensitivityStepScales).
// Every Delta codes the --n_test test images into one container and
// decodes it again. Rate-distortion training ("flow_rd",
// compression/lossy_rd.h): for each Delta of --rd_deltas a fresh copy of the
// likelihood-trained flow (with the weighted steps Delta w_d) and a learned
// prior (initialised to the fitted one) are trained for --rd_steps on
// bits/pixel + lambda MSE under additive uniform noise (or the
// straight-through estimator, --rd_proxy=ste), lambda = --rd_lambda_scale /
// (2 log(2) MSE), MSE what Delta gives the likelihood-trained flow on
// training images (MatchedLambda); then coded like the others. Each of
// these rows also gives the likelihood-trained flow_w PSNR at the same rate
// (interpolated) and the rate the model predicts (-log2 of the rounded
// latents' bin masses) beside the container's. JPEG (libjpeg-turbo,
// compression/lossy_jpeg.h) codes the same images at quality 1..100, the
// tables once for the set and an abbreviated stream per image. Its bytes
// are counted three ways: those streams plus the tables ("shared tables"),
// their entropy-coded scan data alone ("scan data only": the per-image
// markers shared too, as the flow's one container shares its header), and
// standalone JFIF files with optimised Huffman tables. Rates are bits per
// pixel from the real byte counts; PSNR = 10 log10(255^2 / MSE) with the
// MSE over all test pixels of the 8-bit reconstructions (rounded, in
// 0..255). Matched rates: JPEG's PSNR interpolated (linearly in bpp between
// the neighbouring qualities) at each flow rate, for the shared-tables and
// the scan-data counts, and the quality whose scan-data rate is closest.
//
// Writes rate_distortion.csv (every point of both codecs), rd.png (the
// curves), reconstructions.png, model.ftm, results.json, history.csv.
//
//   ./bazelw run --config=opt //experiments:rate_distortion
//   ./bazelw run --config=opt //experiments:rate_distortion -- --data=fashion
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
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
#include "compression/lossy.h"
#include "compression/lossy_jpeg.h"
#include "compression/lossy_rd.h"
#include "data/image_setup.h"
#include "experiments/image_run.h"
#include "models/image_flow.h"
#include "models/model_file.h"
#include "viz/figure.h"
#include "viz/image_grid.h"
#include "viz/lines.h"

ABSL_FLAG(std::string, data, "mnist", "mnist | fashion");
ABSL_FLAG(std::string, flow, "realnvp", "an image flow of the zoo");
ABSL_FLAG(std::string, model, "",
          "a model.ftm of //experiments:images to load instead of training");
ABSL_FLAG(std::string, deltas, "0.03125,0.0625,0.125,0.25,0.5,1,2,4,8",
          "quantisation steps Delta, comma-separated");
ABSL_FLAG(int64_t, steps, 1000, "optimizer steps");
ABSL_FLAG(int64_t, batch, 64, "minibatch size");
ABSL_FLAG(int64_t, n_train, 20000, "training images");
ABSL_FLAG(int64_t, n_fit, 5000, "training images the prior is fitted to");
ABSL_FLAG(int64_t, n_test, 1000, "test images coded");
ABSL_FLAG(double, alpha, 0.05, "logit transform alpha");
ABSL_FLAG(std::string, rd_deltas, "0.0625,0.25,1,4",
          "steps Delta of the rate-distortion-trained models (one model "
          "each; empty: none)");
ABSL_FLAG(int64_t, rd_steps, 300, "rate-distortion training steps per model");
ABSL_FLAG(int64_t, rd_batch, 32, "rate-distortion minibatch size");
ABSL_FLAG(double, rd_lr, 3e-4, "rate-distortion Adam learning rate (flow)");
ABSL_FLAG(double, rd_prior_lr, 3e-3,
          "rate-distortion Adam learning rate (prior)");
ABSL_FLAG(double, rd_lambda_scale, 1.0,
          "lambda = scale / (2 log(2) MSE) (1: the matched slope)");
ABSL_FLAG(std::string, rd_proxy, "noise",
          "quantisation proxy: noise (additive uniform) | ste "
          "(straight-through)");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

namespace flowtape::experiments {
namespace {

using compression::GrayImage;
using compression::LossyCodec;

struct Point {
  std::string codec;
  double setting;  // Delta or quality
  double bpp, psnr, ideal_bpp = NAN, file_bpp = NAN, scan_bpp = NAN;
  double lambda = NAN, estimate_bpp = NAN;  // flow_rd only
};

// A list flag of positive decimals (budget.h's ParseDecimalList).
absl::StatusOr<std::vector<double>> ParseList(const std::string& flag,
                                              const std::string& text) {
  return cli::ParseDecimalList(flag, text, "> 0",
                               [](double v) { return v > 0; });
}

double Psnr(double sse, double count) {
  return 10 * std::log10(255.0 * 255.0 * count / sse);
}

GrayImage Gray(const std::vector<double>& px, int64_t i, int h, int w) {
  GrayImage g{h, w, std::vector<uint8_t>(h * w)};
  for (int k = 0; k < h * w; ++k)
    g.pixels[k] = static_cast<uint8_t>(px[i * h * w + k]);
  return g;
}

// JPEG at quality q on every test image: shared tables + abbreviated
// streams; also the standalone-file size. Decoded pixels into `out`.
absl::StatusOr<Point> JpegPoint(const std::vector<double>& px, int64_t n, int h,
                                int w, int q, std::vector<double>* out) {
  FT_ASSIGN_OR_RETURN(std::vector<uint8_t> tables, compression::JpegTables(q));
  double bytes = tables.size(), file_bytes = 0, scan_bytes = 0, sse = 0;
  out->resize(px.size());
  for (int64_t i = 0; i < n; ++i) {
    const GrayImage g = Gray(px, i, h, w);
    FT_ASSIGN_OR_RETURN(std::vector<uint8_t> s,
                        compression::EncodeJpegAbbreviated(g, q));
    FT_ASSIGN_OR_RETURN(std::vector<uint8_t> f, compression::EncodeJpeg(g, q));
    FT_ASSIGN_OR_RETURN(GrayImage d,
                        compression::DecodeJpegAbbreviated(tables, s));
    FT_ASSIGN_OR_RETURN(size_t scan, compression::JpegScanBytes(s));
    bytes += s.size();
    scan_bytes += scan;
    file_bytes += f.size();
    for (int k = 0; k < h * w; ++k) {
      const double e = double(d.pixels[k]) - g.pixels[k];
      sse += e * e;
      (*out)[i * h * w + k] = d.pixels[k];
    }
  }
  const double pixels = static_cast<double>(n) * h * w;
  Point p{"jpeg", double(q), 8 * bytes / pixels, Psnr(sse, pixels)};
  p.file_bpp = 8 * file_bytes / pixels;
  p.scan_bpp = 8 * scan_bytes / pixels;
  return p;
}

// JPEG's PSNR at `bpp` by linear interpolation between the qualities whose
// rates (rate(point)) bracket it (NaN outside JPEG's range).
template <typename Rate>
double InterpolatePsnr(std::vector<Point> jpeg, double bpp, Rate rate) {
  std::sort(jpeg.begin(), jpeg.end(),
            [&](const Point& a, const Point& b) { return rate(a) < rate(b); });
  for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
    const double lo = rate(jpeg[i]), hi = rate(jpeg[i + 1]);
    if (lo <= bpp && bpp <= hi) {
      const double t = hi > lo ? (bpp - lo) / (hi - lo) : 0;
      return jpeg[i].psnr + t * (jpeg[i + 1].psnr - jpeg[i].psnr);
    }
  }
  return NAN;
}

absl::Status Run(cli::Experiment& ex) {
  const std::string name = absl::GetFlag(FLAGS_data);
  const std::string flow_name = absl::GetFlag(FLAGS_flow);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  const int64_t n_train = absl::GetFlag(FLAGS_n_train);
  const int64_t n_fit = absl::GetFlag(FLAGS_n_fit);
  const int64_t n_test = absl::GetFlag(FLAGS_n_test);
  const double alpha = absl::GetFlag(FLAGS_alpha);
  FT_ASSIGN_OR_RETURN(std::vector<double> deltas,
                      ParseList("deltas", absl::GetFlag(FLAGS_deltas)));
  FT_ASSIGN_OR_RETURN(std::vector<double> rd_deltas,
                      ParseList("rd_deltas", absl::GetFlag(FLAGS_rd_deltas)));
  compression::RdTrainOptions rd;
  rd.steps = absl::GetFlag(FLAGS_rd_steps);
  rd.batch = absl::GetFlag(FLAGS_rd_batch);
  rd.lr = absl::GetFlag(FLAGS_rd_lr);
  rd.prior_lr = absl::GetFlag(FLAGS_rd_prior_lr);
  const double lambda_scale = absl::GetFlag(FLAGS_rd_lambda_scale);
  const std::string proxy = absl::GetFlag(FLAGS_rd_proxy);
  rd.proxy = proxy == "ste" ? compression::QuantizationProxy::kStraightThrough
                            : compression::QuantizationProxy::kUniformNoise;
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"deltas", absl::GetFlag(FLAGS_deltas), !deltas.empty(), "non-empty"},
      {"rd_steps", rd.steps, rd.steps > 0, "> 0"},
      {"rd_batch", rd.batch, rd.batch > 0, "> 0"},
      {"rd_lr", rd.lr, rd.lr > 0 && std::isfinite(rd.lr), "finite, > 0"},
      {"rd_prior_lr", rd.prior_lr,
       rd.prior_lr > 0 && std::isfinite(rd.prior_lr), "finite, > 0"},
      {"rd_lambda_scale", lambda_scale,
       lambda_scale > 0 && std::isfinite(lambda_scale), "finite, > 0"},
      {"rd_proxy", proxy, proxy == "noise" || proxy == "ste", "noise | ste"},
  }));
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"data", name, name == "mnist" || name == "fashion", "mnist | fashion"},
      {"steps", steps, steps > 0, "> 0"},
      {"batch", batch, batch > 0, "> 0"},
      {"n_train", n_train, n_train > 1, "> 1"},
      {"n_fit", n_fit, n_fit > 1, "> 1"},
      {"n_test", n_test, n_test > 0, "> 0"},
      {"alpha", alpha, alpha >= 0 && alpha < 0.5, "in [0, 0.5)"},
  }));
  models::ImageRunConfig c = models::DefaultImageConfig(flow_name, false);
  c.steps = steps, c.batch = batch, c.n_train = n_train;
  c.seed = absl::GetFlag(FLAGS_seed);
  c.zoo.dtype = ex.dtype();
  ex.set_seed(c.seed);
  const Shape image{1, 28, 28};
  FT_RETURN_IF_ERROR(cli::CheckRunMemory(
      cli::ImageFlowFootprint(flow_name, c.zoo.layers, c.zoo.levels,
                              c.zoo.depth, c.zoo.channels, c.zoo.hidden, 0, 1,
                              28, 28,
                              std::max(c.batch, compression::kLossyChunk)),
      absl::StrCat("--batch=", c.batch, " (--flow=", flow_name, ")")));

  // A --model must score 28 x 28 images without a context: its spec is
  // checked before any data is read or model built.
  const std::string model_path = absl::GetFlag(FLAGS_model);
  models::ModelSpec loaded_spec;
  if (!model_path.empty()) {
    FT_ASSIGN_OR_RETURN(loaded_spec,
                        models::ReadModelSpec(cli::ResolvePath(model_path)));
    const Shape& event = loaded_spec.config.event;
    if ((event != Shape{784} && event != image) ||
        loaded_spec.config.context_dim != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "--model=", model_path, ": the model has event ", event.ToString(),
          " and context_dim ", loaded_spec.config.context_dim,
          "; want event [784] or [1, 28, 28] (28 x 28 images) and "
          "context_dim 0"));
  }

  FT_ASSIGN_OR_RETURN(data::ImageSet train,
                      data::LoadImageSetOrSetup(name, "train"));
  FT_ASSIGN_OR_RETURN(data::ImageSet test,
                      data::LoadImageSetOrSetup(name, "test"));
  FT_RETURN_IF_ERROR(cli::CheckImageSet(train, name + " train", image, 10, 10));
  FT_RETURN_IF_ERROR(cli::CheckImageSet(test, name + " test", image, 10, 1));
  const Tensor x =
      Narrow(test.images, 0, 0, std::min(n_test, test.images.dim(0)));
  const int64_t n = x.dim(0);

  // The flow: loaded, or trained by NLL.
  models::ImageFlow f;
  f.image = image;
  f.alpha = alpha;
  Rng rng(c.seed);
  std::string model_file;  // the likelihood-trained flow, for fresh copies
  if (!model_path.empty()) {
    ex.SingleThreaded("--model: no training");
    const std::string path = cli::ResolvePath(model_path);
    FT_ASSIGN_OR_RETURN(f.model, models::LoadModel(path));
    model_file = path;
    f.flatten = loaded_spec.config.event.rank() == 1;
    ex.config()["model"] = path;
  } else {
    FT_ASSIGN_OR_RETURN(
        ImageRun run, TrainImages(ex, flow_name, c, image, train.levels, alpha,
                                  train.images, rng));
    f = run.flow;
    f.alpha = alpha;
    ex.metrics()["best_val_nll"] = run.result.best_val_nll;
    ex.timings()["train_s"] = run.result.seconds;
    model_file = ex.Output("model.ftm");
    FT_RETURN_IF_ERROR(models::SaveModel(model_file, run.spec, *f.model));
  }
  const std::vector<double> bpd = f.BitsPerDim(x, 256);
  double mean_bpd = 0;
  for (double b : bpd) mean_bpd += b / bpd.size();
  ex.metrics()["test_bits_per_dim"] = mean_bpd;

  compression::LossyModel lm;
  lm.flow = f.model->flow();
  lm.image = image;
  lm.event = f.flatten ? Shape{784} : image;
  lm.pixel_map = compression::PixelMap::kLogit;
  lm.alpha = alpha;
  {
    const Tensor fit =
        Narrow(train.images, 0,
               train.images.dim(0) - std::min(n_fit, train.images.dim(0)),
               std::min(n_fit, train.images.dim(0)));
    FT_ASSIGN_OR_RETURN(Tensor z, compression::Latents(lm, fit));
    FT_ASSIGN_OR_RETURN(lm.prior, compression::FitLatentPrior(z));
  }

  const std::vector<double> px = x.ToVector();
  const double pixels = static_cast<double>(px.size());
  std::vector<Point> flow_points, jpeg_points;
  std::vector<std::vector<double>> flow_images;  // of the last variant
  std::vector<double> weights;                   // w_d of flow_w
  // Two variants: one step Delta for every latent ("flow"), and steps
  // Delta w_d weighted by the decoder's sensitivity ("flow_w", reverse
  // water-filling; compression/lossy.h).
  for (const std::string variant : {"flow", "flow_w"}) {
    compression::LossyModel vm = lm;
    if (variant == "flow_w") {
      const int64_t m = std::min<int64_t>(n_fit, 1000);
      Rng probe(c.seed + 1);
      FT_ASSIGN_OR_RETURN(vm.step_scale,
                          compression::SensitivityStepScales(
                              vm, Narrow(train.images, 0, 0, m), 2, probe));
      double lo = INFINITY, hi = 0;
      for (double w : vm.step_scale) lo = std::min(lo, w), hi = std::max(hi, w);
      weights = vm.step_scale;
      ex.metrics()["step_scale_min"] = lo;
      ex.metrics()["step_scale_max"] = hi;
    }
    flow_images.clear();
    for (double delta : deltas) {
      FT_ASSIGN_OR_RETURN(LossyCodec codec, LossyCodec::Create(vm, delta));
      FT_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, codec.Encode(x));
      const std::string file =
          ex.Output(absl::StrCat("test_", variant, "_delta_", delta, ".ftly"));
      std::ofstream(file, std::ios::binary)
          .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      FT_ASSIGN_OR_RETURN(LossyCodec::Decoded d, codec.Decode(bytes));
      std::vector<double> xh = d.pixels.ToVector();
      double sse = 0;
      for (size_t i = 0; i < xh.size(); ++i) {
        xh[i] = std::round(xh[i]);  // the 8-bit image
        sse += (xh[i] - px[i]) * (xh[i] - px[i]);
      }
      Point p{variant, delta, 8.0 * bytes.size() / pixels, Psnr(sse, pixels)};
      p.ideal_bpp = codec.IdealBits(d.symbols) / pixels;
      flow_points.push_back(p);
      flow_images.push_back(std::move(xh));
    }
  }
  const size_t first = flow_points.size() - flow_images.size();  // flow_w
  const std::vector<Point> likelihood_w(flow_points.begin() + first,
                                        flow_points.end());

  // Rate-distortion training: one fresh copy of the flow per Delta.
  const Tensor rd_train =
      Narrow(train.images, 0, 0, std::min(n_train, train.images.dim(0)));
  for (double delta : rd_deltas) {
    compression::LossyModel rm = lm;
    rm.step_scale = weights;
    FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::FlowModel> copy,
                        models::LoadModel(model_file));
    copy->To(ex.dtype());
    rm.flow = copy->flow();
    FT_ASSIGN_OR_RETURN(auto learned,
                        compression::LearnedLatentPrior::Create(lm.prior));
    compression::LearnedLatentPrior& prior = *learned;
    prior.To(ex.dtype());
    {  // lambda from the likelihood-trained flow's MSE at this Delta
      NoGradScope no_grad;
      FT_ASSIGN_OR_RETURN(
          compression::RateDistortionTerms t,
          compression::RateDistortion(
              rm, prior, Narrow(rd_train, 0, 0, std::min<int64_t>(n, 256)),
              delta, compression::QuantizationProxy::kRound, nullptr));
      rd.lambda = lambda_scale *
                  compression::MatchedLambda(Mean(t.sq_error).item() / 784);
    }
    rd.delta = delta;
    rd.seed = c.seed + 7;
    const std::string label = absl::StrCat("rd_delta_", delta);
    cli::HistoryWindow window(ex.history(), label,
                              std::max<int64_t>(1, rd.steps / 20));
    std::cout << absl::StrFormat(
        "rate-distortion training at Delta %g, lambda %.4g (%d steps of %d)\n",
        delta, rd.lambda, rd.steps, rd.batch);
    const auto t0 = std::chrono::steady_clock::now();
    FT_ASSIGN_OR_RETURN(
        std::vector<compression::RdStep> steps_done,
        compression::TrainRateDistortion(
            rm, prior, rd_train, rd, [&](const compression::RdStep& s) {
              window.Step(s.loss);
              if (s.step % std::max<int64_t>(1, rd.steps / 5) == 0)
                std::cout << absl::StrFormat(
                    "  step %d: loss %.4f, proxy %.3f bpp, MSE %.2f\n", s.step,
                    s.loss, s.bpp, s.mse);
            }));
    window.Flush();
    ex.timings()[label + "_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    rm.prior = prior.Values();
    FT_ASSIGN_OR_RETURN(LossyCodec codec, LossyCodec::Create(rm, delta));
    FT_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, codec.Encode(x));
    FT_ASSIGN_OR_RETURN(LossyCodec::Decoded d, codec.Decode(bytes));
    double sse = 0;
    const std::vector<double> xh = d.pixels.ToVector();
    for (size_t i = 0; i < xh.size(); ++i) {
      const double e = std::round(xh[i]) - px[i];
      sse += e * e;
    }
    Point p{"flow_rd", delta, 8.0 * bytes.size() / pixels, Psnr(sse, pixels)};
    p.ideal_bpp = codec.IdealBits(d.symbols) / pixels;
    p.lambda = rd.lambda;
    {
      NoGradScope no_grad;
      double bits = 0;
      for (int64_t start = 0; start < n; start += compression::kLossyChunk) {
        const int64_t len = std::min(compression::kLossyChunk, n - start);
        FT_ASSIGN_OR_RETURN(
            compression::RateDistortionTerms t,
            compression::RateDistortion(
                rm, prior, Narrow(x, 0, start, len), delta,
                compression::QuantizationProxy::kRound, nullptr));
        bits += Sum(t.bits).item();
      }
      p.estimate_bpp = bits / pixels;
    }
    flow_points.push_back(p);
  }

  std::vector<std::vector<double>> jpeg_images(101);
  for (int q = 1; q <= 100; ++q) {
    FT_ASSIGN_OR_RETURN(Point p, JpegPoint(px, n, 28, 28, q, &jpeg_images[q]));
    jpeg_points.push_back(p);
  }

  // The table: each flow rate with JPEG at the matched rate, by two counts
  // of JPEG's bytes: abbreviated streams (tables once, markers per image)
  // and scan data only (markers shared too, like the flow's one container).
  auto shared = [](const Point& p) { return p.bpp; };
  auto scan = [](const Point& p) { return p.scan_bpp; };
  std::cout << absl::StrFormat(
      "%s on %s, %d test images (test %.3f bits/dim lossless NLL)\n"
      "%6s %8s %9s %9s %8s | %13s %13s | %9s %9s %8s | %9s %9s\n",
      flow_name, name, n, mean_bpd, "steps", "Delta", "flow bpp", "ideal",
      "PSNR", "JPEG@bpp", "JPEG scan@bpp", "nearest q", "scan bpp", "PSNR",
      "w_d@bpp", "estimate");
  io::Json table = io::Json::array();
  std::vector<int> matched_q;
  auto json = [](double v) {
    return std::isfinite(v) ? io::Json(v) : io::Json();
  };
  for (const Point& p : flow_points) {
    const double at_shared = InterpolatePsnr(jpeg_points, p.bpp, shared);
    const double at_scan = InterpolatePsnr(jpeg_points, p.bpp, scan);
    const Point* best = &jpeg_points[0];
    for (const Point& j : jpeg_points)
      if (std::abs(j.scan_bpp - p.bpp) < std::abs(best->scan_bpp - p.bpp))
        best = &j;
    matched_q.push_back(static_cast<int>(best->setting));
    const double at_likelihood =
        p.codec == "flow_rd" ? InterpolatePsnr(likelihood_w, p.bpp, shared)
                             : NAN;
    std::cout << absl::StrFormat(
        "%6s %8g %9.3f %9.3f %8.2f | %13.2f %13.2f | %9d %9.3f %8.2f | %9.2f "
        "%9.3f\n",
        p.codec == "flow"     ? "Delta"
        : p.codec == "flow_w" ? "w_d"
                              : "RD",
        p.setting, p.bpp, p.ideal_bpp, p.psnr, at_shared, at_scan,
        static_cast<int>(best->setting), best->scan_bpp, best->psnr,
        at_likelihood, p.estimate_bpp);
    table.push_back({{"codec", p.codec},
                     {"delta", p.setting},
                     {"flow_bpp", p.bpp},
                     {"flow_ideal_bpp", p.ideal_bpp},
                     {"flow_psnr", p.psnr},
                     {"jpeg_psnr_at_flow_bpp", json(at_shared)},
                     {"jpeg_scan_psnr_at_flow_bpp", json(at_scan)},
                     {"jpeg_nearest_quality", best->setting},
                     {"jpeg_nearest_scan_bpp", best->scan_bpp},
                     {"jpeg_nearest_psnr", best->psnr},
                     {"lambda", json(p.lambda)},
                     {"estimate_bpp", json(p.estimate_bpp)},
                     {"likelihood_w_psnr_at_flow_bpp", json(at_likelihood)}});
  }
  ex.metrics()["rate_distortion"] = table;
  ex.metrics()["test_images"] = n;
  ex.config()["deltas"] = deltas;
  ex.config()["rd_deltas"] = rd_deltas;

  {
    std::ofstream csv(ex.Output("rate_distortion.csv"));
    csv << "codec,setting,bpp,psnr,ideal_bpp,jfif_file_bpp,scan_bpp\n";
    auto cell = [](double v) {
      return std::isfinite(v) ? absl::StrFormat("%.6f", v) : std::string();
    };
    for (const auto* set : {&flow_points, &jpeg_points})
      for (const Point& p : *set)
        csv << absl::StrFormat("%s,%g,%.6f,%.4f,%s,%s,%s\n", p.codec, p.setting,
                               p.bpp, p.psnr, cell(p.ideal_bpp),
                               cell(p.file_bpp), cell(p.scan_bpp));
    if (!csv) return absl::InternalError("cannot write rate_distortion.csv");
  }

  viz::Lines plot;
  plot.title =
      absl::StrCat("rate-distortion, ", name, " test (", n, " images)");
  plot.xlabel = "bits per pixel";
  plot.ylabel = "PSNR (dB)";
  viz::LineSeries fs{absl::StrCat(flow_name, " latents, one Delta")},
      fw{absl::StrCat(flow_name, " latents, Delta w_d")},
      fr{absl::StrCat(flow_name, " RD-trained, Delta w_d")};
  fs.markers = fw.markers = fr.markers = true;
  for (const Point& p : flow_points) {
    viz::LineSeries& series = p.codec == "flow"     ? fs
                              : p.codec == "flow_w" ? fw
                                                    : fr;
    series.x.push_back(p.bpp);
    series.y.push_back(p.psnr);
  }
  viz::LineSeries js{"JPEG, shared tables"}, jc{"JPEG, scan data only"},
      jf{"JPEG, JFIF files"};
  for (const Point& p : jpeg_points) {
    js.x.push_back(p.bpp);
    jc.x.push_back(p.scan_bpp);
    jf.x.push_back(p.file_bpp);
    for (auto* s : {&js, &jc, &jf}) s->y.push_back(p.psnr);
  }
  jc.dashed = true;
  jf.dashed = true;
  jf.alpha = 0.5;
  plot.series = {fs, fw, js, jc, jf};
  if (!fr.x.empty()) plot.series.push_back(fr);
  double xmax = 0;
  for (const Point& p : flow_points) xmax = std::max(xmax, p.bpp);
  plot.box = viz::Box{0, std::max(4.0, 1.1 * xmax), 5, 50};
  viz::Figure rd_figure;
  rd_figure.Add(plot);
  FT_RETURN_IF_ERROR(ex.WriteFigure(rd_figure, "rd.png"));

  // Eight test images: the original, the flow at each Delta, JPEG at the
  // matched qualities.
  const int k = 8;
  std::vector<double> tiles;
  std::vector<std::string> labels = {"original"};
  auto add_row = [&](const std::vector<double>& images) {
    for (int i = 0; i < k * 784; ++i) tiles.push_back(images[i] / 255.0);
  };
  add_row(px);
  // The weighted variant's rows.
  for (size_t j = 0; j < flow_images.size(); ++j) {
    add_row(flow_images[j]);
    labels.push_back(absl::StrFormat("D=%g", flow_points[first + j].setting));
  }
  for (size_t j = first; j < first + flow_images.size(); ++j) {
    add_row(jpeg_images[matched_q[j]]);
    labels.push_back(absl::StrFormat("q=%d", matched_q[j]));
  }
  if (n >= k) {
    viz::ImageGrid grid;
    grid.title = "flow, Delta w_d (D = Delta) vs JPEG at matched rates (q)";
    grid.images = Tensor::FromVector(
        Shape{static_cast<int64_t>(labels.size()) * k, 1, 28, 28}, tiles);
    grid.row_labels = labels;
    viz::FigureOptions size;
    size.width = 640;
    size.height = 90 + 60 * static_cast<int>(labels.size());
    viz::Figure recon(size);
    recon.Add(grid);
    FT_RETURN_IF_ERROR(ex.WriteFigure(recon, "reconstructions.png"));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"rate_distortion",
       "lossy compression with a normalizing flow (quantised latents, rANS) "
       "vs JPEG: bits per pixel vs PSNR on MNIST or Fashion-MNIST.\n"
       "  ./bazelw run --config=opt //experiments:rate_distortion\n"
       "  ./bazelw run --config=opt //experiments:rate_distortion -- "
       "--data=fashion --deltas=0.1,0.3,1",
       flowtape::kFloat32},
      argc, argv, flowtape::experiments::Run);
}
