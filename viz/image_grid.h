// Image grid: a batch of small images (samples of an image model, data
// examples) tiled `cols` to a row under a title, `pad` white pixels between
// tiles, scaled up by the largest whole factor that fits the cell (crisp
// pixels; a fractional factor below 1), centred. Optional row labels are
// written left of each row (e.g. the class of a conditional model's row).
//
//   images: [N, C, H, W], C = 1 (grey) or 3 (RGB), values in [0, 1]
//     (clamped; NaN is drawn as 0).
//   The returned Axes map grid pixels: x in [0, grid width] to the right,
//   y in [0, grid height] downwards (lo = grid height, hi = 0).
//
// Errors: InvalidArgument for images that are not [N, 1 or 3, H, W] with
// N >= 1, cols < 1, pad < 0, more row labels than rows, or a cell too small.
#ifndef FLOWTAPE_VIZ_IMAGE_GRID_H_
#define FLOWTAPE_VIZ_IMAGE_GRID_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/png.h"

namespace flowtape::viz {

struct ImageGrid {
  std::string title{};
  Tensor images{};
  int cols = 8;
  int pad = 2;
  std::vector<std::string> row_labels{};
};

// The tiles as one image (pad white pixels between tiles, none around).
absl::StatusOr<Image> TileImages(const Tensor& images, int cols, int pad);

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const ImageGrid& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_IMAGE_GRID_H_
