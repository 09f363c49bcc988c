// flowtape-decompress: IDF container -> IDX images (compression/idf_files.h).
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "compression/cli/command.h"
#include "compression/idf_files.h"

ABSL_FLAG(std::string, model, "", "IDF model file the container was made with");
ABSL_FLAG(std::string, in, "", "IDF container");
ABSL_FLAG(std::string, out, "", "IDX image file to write");

namespace {

constexpr char kUsage[] =
    "flowtape-decompress: restores the images of an IDF container\n"
    "(compression/idf_codec.h) as an IDX file, bit-identical to the input.\n"
    "  --model=FILE    the IDF model file used to compress\n"
    "  --in=FILE       the container\n"
    "  --out=FILE      IDX images to write\n"
    "Example:\n"
    "  bazel run //compression:flowtape-decompress -- --model=idf.ckpt \\\n"
    "    --in=x.idfc --out=x-idx3-ubyte\n";

absl::Status Run() {
  using flowtape::compression::cli::ResolveCommandPath;
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string in = absl::GetFlag(FLAGS_in);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (model.empty()) return absl::InvalidArgumentError("--model is required");
  if (in.empty()) return absl::InvalidArgumentError("--in is required");
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  FT_ASSIGN_OR_RETURN(const auto images,
                      flowtape::compression::DecompressToIdx(
                          ResolveCommandPath(model), ResolveCommandPath(in),
                          ResolveCommandPath(out)));
  std::cout << images.count << " images " << images.height << "x"
            << images.width << " -> " << out << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  return flowtape::compression::cli::RunCommand("flowtape-decompress", kUsage,
                                                argc, argv, Run);
}
