// flowtape-compress: IDX images -> IDF container (compression/idf_files.h).
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "compression/cli/command.h"
#include "compression/idf_files.h"

ABSL_FLAG(std::string, model, "", "IDF model file (compression/idf.h)");
ABSL_FLAG(std::string, images, "", "IDX image file (MNIST layout)");
ABSL_FLAG(int64_t, first, 0, "first image of the range");
ABSL_FLAG(int64_t, count, -1, "number of images (-1: to the end)");
ABSL_FLAG(std::string, out, "", "container to write");

namespace {

constexpr char kUsage[] =
    "flowtape-compress: lossless compression of IDX images with an integer\n"
    "discrete flow; writes an IDF container (compression/idf_codec.h).\n"
    "  --model=FILE    IDF model file (written by "
    "//experiments:compress_mnist)\n"
    "  --images=FILE   IDX images (N x H x W bytes), e.g. MNIST t10k\n"
    "  --first=I       first image (default 0)\n"
    "  --count=N       images to code (default -1: to the end)\n"
    "  --out=FILE      the container\n"
    "Example:\n"
    "  bazel run //compression:flowtape-compress -- --model=idf.ckpt \\\n"
    "    --images=t10k-images-idx3-ubyte --first=0 --count=100 --out=x.idfc\n";

absl::Status Run() {
  using flowtape::compression::cli::ResolveCommandPath;
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string images = absl::GetFlag(FLAGS_images);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (model.empty()) return absl::InvalidArgumentError("--model is required");
  if (images.empty()) return absl::InvalidArgumentError("--images is required");
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  FT_ASSIGN_OR_RETURN(const auto report,
                      flowtape::compression::CompressIdxFile(
                          ResolveCommandPath(model), ResolveCommandPath(images),
                          absl::GetFlag(FLAGS_first),
                          absl::GetFlag(FLAGS_count), ResolveCommandPath(out)));
  std::cout << report.count << " images " << report.height << "x"
            << report.width << " -> " << report.bytes << " bytes ("
            << report.bits_per_dim() << " bits/dim)\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  return flowtape::compression::cli::RunCommand("flowtape-compress", kUsage,
                                                argc, argv, Run);
}
