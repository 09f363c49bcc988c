// Reliability diagram of a classifier: the top-class confidence axis [0, 1]
// cut into B equal bins; bin b spans [b / B, (b + 1) / B] and its bar is as
// tall as the accuracy of the predictions that fell in it. The gap between
// the bar and the bin's mean confidence is shaded red (above the bar:
// overconfident; inside it: underconfident), and the dashed diagonal
// accuracy = confidence is perfect calibration. Empty bins (count 0) are
// left out. `legend`: a legend naming bars, gap and diagonal (a figure of
// several diagrams usually shows it once).
//
// Errors: InvalidArgument for accuracy, confidence and count of different
// (or zero) lengths, a negative count, or a cell too small to plot in.
#ifndef FLOWTAPE_VIZ_RELIABILITY_H_
#define FLOWTAPE_VIZ_RELIABILITY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "viz/axes.h"
#include "viz/canvas.h"

namespace flowtape::viz {

struct Reliability {
  std::string title{};
  std::string xlabel = "confidence", ylabel = "accuracy";
  std::vector<double> accuracy{}, confidence{};  // per bin
  std::vector<int64_t> count{};
  bool legend = true;
};

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell,
                          const Reliability& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_RELIABILITY_H_
