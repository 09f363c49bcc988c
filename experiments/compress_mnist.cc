// compress_mnist: lossless compression of MNIST with a multi-scale integer
// discrete flow (compression/idf.h: squeezes, convolutional couplings,
// factor-out with conditional logistic-mixture priors), against PNG, gzip
// and xz.
//
// 1. Trains the IDF on MNIST's training images (the last --val images held
//    out for validation) by the exact discrete NLL (Adam, cosine-annealed
//    from --lr to --lr / 100, TrainNll; the best validation state is kept).
// 2. Saves it as a model file (idf.ckpt), writes test images [0, --images)
//    as an IDX file (test.idx), compresses it with the flowtape-compress
//    library code (test.idfc) and decompresses it (decoded.idx), checking the
//    IDX bytes are identical.
// 3. Prints bits per dimension (8 x bytes / (N 784)) of: the model's NLL on
//    those images, the ideal code length of the coder's tables, the
//    container (headers included); PNG at zlib level 9 (libpng, 8-bit grey,
//    one file per image, and all images as one 28 x 28N strip), gzip -9 and
//    xz -9e of the raw pixels (zlib deflate level 9 with the gzip wrapper;
//    liblzma preset 9 | extreme with CRC64, what `xz -9e` writes).
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "compression/idf.h"
#include "compression/idf_codec.h"
#include "compression/idf_files.h"
#include "data/atomic_file.h"
#include "data/image_setup.h"
#include "data/read_file.h"
#include "lzma.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "png.h"
#include "zlib.h"

ABSL_FLAG(int64_t, steps, 1500, "training steps");
ABSL_FLAG(int64_t, batch, 64, "training batch size");
ABSL_FLAG(double, lr, 5e-3, "Adam learning rate");
ABSL_FLAG(int, couplings, 2,
          "couplings per level (levels: 4 x 14 x 14, 8 x 7 x 7, 4 x 7 x 7, "
          "2 x 7 x 7, final 1 x 7 x 7 without couplings)");
ABSL_FLAG(int64_t, hidden, 32, "channels of each convnet's hidden layers");
ABSL_FLAG(int, hidden_layers, 2, "hidden layers of each convnet");
ABSL_FLAG(int, components, 4, "logistic mixture components per latent");
ABSL_FLAG(int64_t, val, 1000, "training images held out for validation");
ABSL_FLAG(int64_t, images, 1000, "test images to compress");
ABSL_FLAG(uint64_t, seed, 1, "seed");

namespace flowtape {
namespace {

constexpr char kUsage[] =
    "compress_mnist: trains an integer discrete flow on MNIST, compresses\n"
    "test images with flowtape-compress's code and compares PNG, gzip, xz.\n"
    "  ./bazelw run --config=opt //experiments:compress_mnist -- "
    "--steps=1500 --images=1000\n";

// libpng writing into a string.
void PngWrite(png_structp png, png_bytep data, png_size_t n) {
  static_cast<std::string*>(png_get_io_ptr(png))
      ->append(reinterpret_cast<const char*>(data), n);
}
void PngFlush(png_structp) {}

absl::StatusOr<int64_t> PngBytes(const uint8_t* pixels, int64_t width,
                                 int64_t height) {
  std::string out;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return absl::InternalError("libpng: out of memory");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return absl::InternalError("libpng: write failed");
  }
  png_set_write_fn(png, &out, PngWrite, PngFlush);
  png_set_compression_level(png, 9);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width),
               static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int64_t y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(pixels + y * width));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return static_cast<int64_t>(out.size());
}

absl::StatusOr<int64_t> GzipBytes(const std::vector<uint8_t>& raw) {
  z_stream s{};
  if (deflateInit2(&s, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("zlib: deflateInit2 failed");
  }
  std::vector<uint8_t> out(deflateBound(&s, raw.size()) + 64);
  s.next_in = const_cast<Bytef*>(raw.data());
  s.avail_in = static_cast<uInt>(raw.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&s, Z_FINISH);
  const int64_t n = static_cast<int64_t>(s.total_out);
  deflateEnd(&s);
  if (rc != Z_STREAM_END) return absl::InternalError("zlib: deflate failed");
  return n;
}

absl::StatusOr<int64_t> XzBytes(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> out(lzma_stream_buffer_bound(raw.size()));
  size_t pos = 0;
  if (lzma_easy_buffer_encode(9 | LZMA_PRESET_EXTREME, LZMA_CHECK_CRC64,
                              nullptr, raw.data(), raw.size(), out.data(), &pos,
                              out.size()) != LZMA_OK) {
    return absl::InternalError("liblzma: encode failed");
  }
  return static_cast<int64_t>(pos);
}

absl::Status Run(cli::Experiment& ex) {
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  const double lr = absl::GetFlag(FLAGS_lr);
  const int64_t val = absl::GetFlag(FLAGS_val);
  const int64_t n_images = absl::GetFlag(FLAGS_images);
  compression::IdfOptions options;
  for (size_t l = 0; l + 1 < options.levels.size(); ++l) {
    options.levels[l].couplings = absl::GetFlag(FLAGS_couplings);
  }
  const int hidden_layers = absl::GetFlag(FLAGS_hidden_layers);
  options.hidden.assign(std::max(hidden_layers, 0),
                        absl::GetFlag(FLAGS_hidden));
  options.components = absl::GetFlag(FLAGS_components);
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"steps", steps, steps >= 0, ">= 0"},
      {"batch", batch, batch >= 1, ">= 1"},
      {"lr", lr, std::isfinite(lr) && lr > 0, "finite and > 0"},
      {"val", val, val >= 1 && val <= 10000, "in 1..10000"},
      {"images", n_images, n_images >= 1 && n_images <= 10000, "in 1..10000"},
  }));
  FT_RETURN_IF_ERROR(options.Validate());
  const double params = static_cast<double>(options.NumParameters());
  // Activations per image: each convnet keeps ~4 copies of its hidden
  // layers (conv, ReLU, their gradients); nets: couplings + prior per level.
  const double nets = 5.0 * (absl::GetFlag(FLAGS_couplings) + 1);
  FT_RETURN_IF_ERROR(
      cli::CheckRunMemory({params,
                           6.0 * 784 + nets * 4.0 * hidden_layers *
                                           absl::GetFlag(FLAGS_hidden) * 196.0,
                           static_cast<double>(batch), 70000.0 * 784},
                          "--couplings, --hidden, --hidden_layers, --batch"));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  ex.set_seed(seed);
  ex.config()["idf"] = options.ToJson();

  FT_ASSIGN_OR_RETURN(data::ImageSet train,
                      data::LoadImageSetOrSetup("mnist", "train"));
  FT_ASSIGN_OR_RETURN(data::ImageSet test,
                      data::LoadImageSetOrSetup("mnist", "test"));
  const Shape image{1, 28, 28};
  FT_RETURN_IF_ERROR(
      cli::CheckImageSet(train, "mnist train", image, 10, val + batch));
  FT_RETURN_IF_ERROR(
      cli::CheckImageSet(test, "mnist test", image, 10, n_images));

  const DType dtype = ex.dtype();
  const int64_t n_train = train.images.dim(0) - val;
  training::TrainData data;
  data.train = Cast(Narrow(train.images, 0, 0, n_train), dtype);
  data.val = Cast(Narrow(train.images, 0, n_train, val), dtype);
  auto make = [&](int) -> absl::StatusOr<training::Replica> {
    Rng init(seed);
    FT_ASSIGN_OR_RETURN(
        auto flow, compression::IntegerDiscreteFlow::Create(options, init));
    flow->To(dtype);
    const compression::IntegerDiscreteFlow* f = flow.get();
    training::NllFn nll = [f](const Tensor& x, const Tensor&, Rng&) {
      return f->Nll(x);
    };
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*flow, nn::AdamOptions{/*lr=*/lr}));
    adam->set_schedule(nn::CosineAnnealingLr(lr, steps, lr / 100));
    return training::Replica{flow, nll, adam};
  };
  training::TrainOptions topt;
  topt.batch_size = batch;
  topt.max_steps = steps;
  topt.eval_every = std::max<int64_t>(1, std::min<int64_t>(250, steps));
  topt.eval_batch_size = 500;
  topt.log_every = 100;
  topt.seed = seed;
  FT_ASSIGN_OR_RETURN(training::ThreadedTraining run,
                      ex.Train(make, data, topt));
  ex.history().AddTraining(run.result, topt.log_every, "idf");
  ex.timings()["train_s"] = run.result.seconds;
  auto flow = std::const_pointer_cast<compression::IntegerDiscreteFlow>(
      std::static_pointer_cast<const compression::IntegerDiscreteFlow>(
          run.replica.model));
  flow->To(kFloat64);

  // The commands' code on files.
  const std::string model_path = ex.Output("idf.ckpt");
  FT_RETURN_IF_ERROR(compression::SaveIdf(model_path, *flow));
  FT_ASSIGN_OR_RETURN(compression::IdfImages images,
                      compression::ImagesFromTensor(test.images, 0, n_images));
  const std::string idx = compression::IdxImageBytes(images);
  const std::string idx_path = ex.Output("test.idx");
  FT_RETURN_IF_ERROR(data::WriteFileAtomically(idx_path, idx));
  const auto t0 = std::chrono::steady_clock::now();
  FT_ASSIGN_OR_RETURN(
      compression::CompressReport report,
      compression::CompressIdxFile(model_path, idx_path, 0, n_images,
                                   ex.Output("test.idfc")));
  const auto t1 = std::chrono::steady_clock::now();
  FT_RETURN_IF_ERROR(compression::DecompressToIdx(model_path,
                                                  ex.Output("test.idfc"),
                                                  ex.Output("decoded.idx"))
                         .status());
  const auto t2 = std::chrono::steady_clock::now();
  FT_ASSIGN_OR_RETURN(
      std::string decoded,
      data::ReadFileMaybeGz(ex.Output("decoded.idx"), int64_t{1} << 30, "IDX"));
  if (decoded != idx) {
    return absl::InternalError("decoded.idx differs from test.idx");
  }
  ex.timings()["compress_s"] = std::chrono::duration<double>(t1 - t0).count();
  ex.timings()["decompress_s"] = std::chrono::duration<double>(t2 - t1).count();

  // Baselines.
  const double dims = static_cast<double>(n_images) * 784;
  int64_t png_each = 0;
  for (int64_t i = 0; i < n_images; ++i) {
    FT_ASSIGN_OR_RETURN(int64_t b,
                        PngBytes(images.pixels.data() + i * 784, 28, 28));
    png_each += b;
  }
  FT_ASSIGN_OR_RETURN(int64_t png_strip,
                      PngBytes(images.pixels.data(), 28, 28 * n_images));
  FT_ASSIGN_OR_RETURN(int64_t gz, GzipBytes(images.pixels));
  FT_ASSIGN_OR_RETURN(int64_t xz, XzBytes(images.pixels));
  const double nll =
      compression::IdfBitsPerDim(*flow, Narrow(test.images, 0, 0, n_images));
  struct Row {
    std::string method;
    int64_t bytes;  // -1: a model quantity
    double bpd;
  };
  const std::vector<Row> rows = {
      {"IDF model NLL (float64)", -1, nll},
      {"IDF ideal code length (coder's tables)", -1,
       report.stats.ideal_bits / dims},
      {"IDF container (flowtape-compress, headers incl.)", report.bytes,
       8.0 * report.bytes / dims},
      {"PNG level 9, one file per image", png_each, 8.0 * png_each / dims},
      {"PNG level 9, one 28 x 28N strip", png_strip, 8.0 * png_strip / dims},
      {"gzip -9 (raw pixels)", gz, 8.0 * gz / dims},
      {"xz -9e (raw pixels)", xz, 8.0 * xz / dims},
  };
  std::ostringstream table;
  table << absl::StrFormat("MNIST test images 0..%d (%d x 784 pixels)\n",
                           n_images - 1, n_images)
        << "| method | bytes | bits/dim |\n|---|---:|---:|\n";
  for (const Row& r : rows) {
    table << "| " << r.method << " | "
          << (r.bytes < 0 ? std::string("-") : absl::StrCat(r.bytes)) << " | "
          << absl::StrFormat("%.4f", r.bpd) << " |\n";
  }
  std::cout << table.str();
  FT_RETURN_IF_ERROR(
      data::WriteFileAtomically(ex.Output("table.md"), table.str()));
  io::Json& m = ex.metrics();
  m["model_nll_bpd"] = nll;
  m["ideal_bpd"] = report.stats.ideal_bits / dims;
  m["container_bytes"] = report.bytes;
  m["container_bpd"] = 8.0 * report.bytes / dims;
  m["escapes"] = report.stats.escapes;
  m["png_each_bytes"] = png_each;
  m["png_strip_bytes"] = png_strip;
  m["gzip9_bytes"] = gz;
  m["xz9e_bytes"] = xz;
  m["best_val_nll_nats"] = run.result.best_val_nll;
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"compress_mnist", flowtape::kUsage, flowtape::kFloat32}, argc, argv,
      flowtape::Run);
}
