#include "viz/loss_curve.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::viz {

absl::Status LossCurveOptions::Validate() const {
  if (smooth < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "loss curve: smooth = ", smooth, " (want >= 0; 0: automatic)"));
  return absl::OkStatus();
}

absl::StatusOr<Lines> LossCurve(const std::vector<double>& train_loss,
                                const std::vector<double>& val_steps,
                                const std::vector<double>& val_loss,
                                const LossCurveOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  if (val_steps.size() != val_loss.size())
    return absl::InvalidArgumentError(
        absl::StrCat("loss curve: ", val_steps.size(), " validation steps but ",
                     val_loss.size(), " validation losses"));
  Lines lines;
  lines.title = options.title;
  lines.xlabel = "step";
  lines.ylabel = options.ylabel;
  lines.log_y = options.log_y;
  const size_t n = train_loss.size();
  if (n > 0) {
    LineSeries raw, mean;
    const size_t w =
        options.smooth > 0 ? options.smooth : std::max<size_t>(1, n / 50);
    double sum = 0;
    size_t finite = 0;
    for (size_t i = 0; i < n; ++i) {
      raw.x.push_back(i + 1.0);
      raw.y.push_back(train_loss[i]);
      // Running mean over the finite losses of the last w steps.
      if (std::isfinite(train_loss[i])) sum += train_loss[i], ++finite;
      if (i >= w && std::isfinite(train_loss[i - w]))
        sum -= train_loss[i - w], --finite;
      if (i + 1 >= w) {
        mean.x.push_back(i + 1.0);
        mean.y.push_back(finite > 0 ? sum / finite : NAN);
      }
    }
    raw.color = mean.color = SeriesColor(0);
    if (w > 1) {
      raw.alpha = 0.25;
      raw.width = 1.0;
      mean.label = absl::StrCat("train (mean of ", w, " steps)");
      lines.series.push_back(std::move(raw));
      lines.series.push_back(std::move(mean));
    } else {
      raw.label = "train";
      lines.series.push_back(std::move(raw));
    }
  }
  LineSeries val;
  val.label = "validation";
  val.x = val_steps;
  val.y = val_loss;
  val.color = SeriesColor(1);
  val.markers = val_steps.size() <= 60;
  if (!val_steps.empty() || !val_loss.empty())
    lines.series.push_back(std::move(val));
  return lines;
}

}  // namespace flowtape::viz
