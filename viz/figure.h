// Figure: a grid of panels rendered into one PNG.
//
//   FigureOptions options;
//   options.cols = 2;
//   options.title = "RealNVP on moons";
//   Figure fig(options);
//   viz::Scatter data, model;
//   data.title = "data";  // and its series, box, ...
//   model.title = "model samples";
//   fig.Add(data);
//   fig.Add(model);
//   absl::Status s = fig.Write("samples.png");
//
// Panels fill the grid row by row: cols per row (0: all in one row), rows =
// ceil(panels / cols). The image is width x height pixels (0: kCellWidth per
// column, kCellHeight per row, plus kTitleBand for a figure title); the title
// band, if any, is at the top and the rest is split into equal cells.
//
// A panel is any value P with a function found by argument-dependent lookup
//   absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const P& p);
// that draws p inside `cell` and returns the data -> pixel map it used (see
// heatmap.h, scatter.h, lines.h, histogram.h, image_grid.h,
// reliability.h, sphere_map.h). Render() returns the picture and, for each
// panel in order, that map, so callers and tests can find where data landed.
//
// Errors: a panel's error Status, prefixed with the panel's index and title
// ("panel 1 (model density): ..."); an empty figure, or one of more than
// kMaxPixels pixels, is InvalidArgument;
// Write adds the file errors of Canvas::WritePng (path and errno text).
#ifndef FLOWTAPE_VIZ_FIGURE_H_
#define FLOWTAPE_VIZ_FIGURE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/png.h"

namespace flowtape::viz {

inline constexpr int kCellWidth = 480;
inline constexpr int kCellHeight = 420;
inline constexpr int kTitleBand = 36;
inline constexpr double kMaxPixels = 1e8;

struct FigureOptions {
  int cols = 0;               // 0: one row
  int width = 0, height = 0;  // pixels; 0: from the cells
  std::string title{};
  // InvalidArgument unless cols, width and height are >= 0 (Render and
  // Write check it).
  absl::Status Validate() const;
};

struct Rendering {
  Image image{};
  std::vector<Axes> axes{};  // one per panel
};

class Figure {
 public:
  explicit Figure(FigureOptions options = {}) : options_(std::move(options)) {}

  template <typename P>
  Figure& Add(P panel) {
    std::string title = panel.title;
    panels_.push_back({std::move(title), [p = std::move(panel)](
                                             Canvas& canvas, const Rect& cell) {
                         return Draw(canvas, cell, p);
                       }});
    return *this;
  }

  int size() const { return static_cast<int>(panels_.size()); }
  // The image size Render() produces.
  int width() const;
  int height() const;

  absl::StatusOr<Rendering> Render() const;
  absl::Status Write(const std::string& path) const;

 private:
  struct Entry {
    std::string title;
    std::function<absl::StatusOr<Axes>(Canvas&, const Rect&)> draw;
  };
  int cols() const;
  int rows() const;
  absl::Status CheckSize() const;
  absl::Status DrawAll(Canvas& canvas, std::vector<Axes>* axes) const;

  FigureOptions options_;
  std::vector<Entry> panels_;
};

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_FIGURE_H_
