// Loss curve: training and validation loss against the training step, as a
// Lines panel (plain vectors, so any training loop can feed it; e.g.
// training::TrainResult's `losses` and `val_history`).
//
//   train_loss[i]: the minibatch loss of step i + 1. Drawn faintly, with its
//     running mean over `smooth` steps (0: about 1/50 of the steps) on top,
//     labelled "train (mean of W steps)".
//   (val_steps[k], val_loss[k]): the validation loss after val_steps[k]
//     steps, a line with dots labelled "validation".
//   log_y: log10 loss axis (the losses must then be positive).
// Errors: InvalidArgument for options that fail Validate() (smooth < 0) and
// val_steps / val_loss of different lengths; non-positive losses on a log
// axis surface as the Lines panel's InvalidArgument when drawn.
#ifndef FLOWTAPE_VIZ_LOSS_CURVE_H_
#define FLOWTAPE_VIZ_LOSS_CURVE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "viz/lines.h"

namespace flowtape::viz {

struct LossCurveOptions {
  std::string title = "training";
  std::string ylabel = "NLL (nats)";
  bool log_y = false;
  int smooth = 0;
  absl::Status Validate() const;
};

absl::StatusOr<Lines> LossCurve(const std::vector<double>& train_loss,
                                const std::vector<double>& val_steps,
                                const std::vector<double>& val_loss,
                                const LossCurveOptions& options = {});

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_LOSS_CURVE_H_
