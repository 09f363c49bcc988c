#include "viz/figure.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::viz {

int Figure::cols() const {
  const int n = std::max(1, size());
  return options_.cols > 0 ? std::min(options_.cols, n) : n;
}

int Figure::rows() const { return (std::max(1, size()) + cols() - 1) / cols(); }

int Figure::width() const {
  return options_.width > 0 ? options_.width : cols() * kCellWidth;
}

int Figure::height() const {
  if (options_.height > 0) return options_.height;
  return rows() * kCellHeight + (options_.title.empty() ? 0 : kTitleBand);
}

absl::Status Figure::DrawAll(Canvas& canvas, std::vector<Axes>* axes) const {
  const double band = options_.title.empty() ? 0 : kTitleBand;
  if (!options_.title.empty()) {
    canvas.SetColor({0, 0, 0});
    canvas.Text(options_.title, canvas.width() / 2.0, band / 2 + 2,
                kTitleFont + 2, 0.5, 0.5, 0.0, /*bold=*/true);
  }
  const double cell_w = static_cast<double>(canvas.width()) / cols();
  const double cell_h = (canvas.height() - band) / rows();
  for (int i = 0; i < size(); ++i) {
    const Rect cell{(i % cols()) * cell_w, band + (i / cols()) * cell_h, cell_w,
                    cell_h};
    cairo_save(canvas.cr());
    absl::StatusOr<Axes> a = panels_[i].draw(canvas, cell);
    cairo_restore(canvas.cr());
    if (a.ok() && !canvas.status().ok()) a = canvas.status();
    if (!a.ok())
      return absl::Status(
          a.status().code(),
          absl::StrCat("panel ", i,
                       panels_[i].title.empty()
                           ? ""
                           : absl::StrCat(" (", panels_[i].title, ")"),
                       ": ", a.status().message()));
    axes->push_back(*a);
  }
  return absl::OkStatus();
}

absl::Status FigureOptions::Validate() const {
  if (cols < 0 || width < 0 || height < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("figure: cols = ", cols, ", width = ", width,
                     ", height = ", height, " must be >= 0 (0: automatic)"));
  return absl::OkStatus();
}

absl::Status Figure::CheckSize() const {
  FT_RETURN_IF_ERROR(options_.Validate());
  if (panels_.empty())
    return absl::InvalidArgumentError("figure: no panels to draw");
  if (static_cast<double>(width()) * height() > kMaxPixels)
    return absl::InvalidArgumentError(
        absl::StrCat("figure: ", width(), "x", height(),
                     " pixels is more than ", kMaxPixels));
  return absl::OkStatus();
}

absl::StatusOr<Rendering> Figure::Render() const {
  FT_RETURN_IF_ERROR(CheckSize());
  Canvas canvas(width(), height());
  Rendering r;
  FT_RETURN_IF_ERROR(DrawAll(canvas, &r.axes));
  r.image = canvas.ToImage();
  return r;
}

absl::Status Figure::Write(const std::string& path) const {
  FT_RETURN_IF_ERROR(CheckSize());
  Canvas canvas(width(), height());
  std::vector<Axes> axes;
  FT_RETURN_IF_ERROR(DrawAll(canvas, &axes));
  return canvas.WritePng(path);
}

}  // namespace flowtape::viz
