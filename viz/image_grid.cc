#include "viz/image_grid.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::viz {

absl::StatusOr<Image> TileImages(const Tensor& images, int cols, int pad) {
  if (!images.defined() || images.rank() != 4 || images.dim(0) < 1 ||
      (images.dim(1) != 1 && images.dim(1) != 3) || images.dim(2) < 1 ||
      images.dim(3) < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("image grid: images ",
                     images.defined() ? images.shape().ToString() : "undefined",
                     " (want [N >= 1, 1 or 3, H, W])"));
  if (cols < 1 || pad < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("image grid: cols ", cols, ", pad ", pad));
  const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2),
                w = images.dim(3);
  const int64_t used_cols = std::min<int64_t>(cols, n);
  const int64_t rows = (n + used_cols - 1) / used_cols;
  const int64_t gw = used_cols * (w + pad) - pad, gh = rows * (h + pad) - pad;
  if (static_cast<double>(gw) * gh > 1e8)
    return absl::InvalidArgumentError(
        absl::StrCat("image grid: ", gw, "x", gh, " pixels"));
  Image out(static_cast<int>(gw), static_cast<int>(gh));
  const double* d = images.data<double>();
  auto byte = [](double v) {
    return static_cast<uint8_t>(
        std::lround(255.0 * std::clamp(std::isnan(v) ? 0.0 : v, 0.0, 1.0)));
  };
  for (int64_t k = 0; k < n; ++k) {
    const int64_t x0 = (k % used_cols) * (w + pad),
                  y0 = (k / used_cols) * (h + pad);
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        auto v = [&](int64_t ch) {
          return byte(d[((k * c + ch) * h + y) * w + x]);
        };
        const uint8_t g = v(0);
        out.set(static_cast<int>(x0 + x), static_cast<int>(y0 + y),
                c == 1 ? Rgb{g, g, g} : Rgb{g, v(1), v(2)});
      }
  }
  return out;
}

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell,
                          const ImageGrid& p) {
  FT_ASSIGN_OR_RETURN(const Image grid, TileImages(p.images, p.cols, p.pad));
  const int64_t cols = std::min<int64_t>(p.cols, p.images.dim(0));
  const int64_t rows = (p.images.dim(0) + cols - 1) / cols;
  if (static_cast<int64_t>(p.row_labels.size()) > rows)
    return absl::InvalidArgumentError(
        absl::StrCat("image grid: ", p.row_labels.size(), " row labels for ",
                     rows, " rows"));
  double label_w = 0;
  for (const std::string& s : p.row_labels)
    label_w = std::max(label_w, canvas.TextWidth(s, kLabelFont));
  const double top = p.title.empty() ? 10 : canvas.TextHeight(kTitleFont) + 14;
  const double left = 10 + (label_w > 0 ? label_w + 8 : 0);
  const double avail_w = cell.w - left - 10, avail_h = cell.h - top - 10;
  if (avail_w < 20 || avail_h < 20)
    return absl::InvalidArgumentError(absl::StrCat(
        "panel of ", cell.w, "x", cell.h, " pixels leaves no room to plot"));
  double scale = std::min(avail_w / grid.width, avail_h / grid.height);
  if (scale >= 1) scale = std::floor(scale);
  const double w = grid.width * scale, h = grid.height * scale;
  const Rect area{std::round(cell.x + left + (avail_w - w) / 2),
                  std::round(cell.y + top + (avail_h - h) / 2), w, h};
  canvas.DrawImage(grid, area, /*smooth=*/scale < 1);
  canvas.SetColor({0, 0, 0});
  const double tile_h = (grid.height + p.pad) / static_cast<double>(rows);
  for (size_t r = 0; r < p.row_labels.size(); ++r)
    canvas.Text(p.row_labels[r], area.x - 8,
                area.y + (r * tile_h + (tile_h - p.pad) / 2) * scale,
                kLabelFont, 1.0, 0.5);
  DrawTitle(canvas, area, p.title);
  return Axes{area, MakeAxis(0, grid.width), MakeAxis(grid.height, 0)};
}

}  // namespace flowtape::viz
