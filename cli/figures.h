// Figures the command-line programs share (built on viz/):
//   SamplesFigure(data, samples, box): scatter panels "data" (blue) and
//     "model samples" (orange) side by side on the same box; an undefined
//     `data` leaves only the samples panel.
//   LossFigure(result, title): the training loss per step and the validation
//     NLL of a training::TrainResult against the step (viz::LossCurve).
#ifndef FLOWTAPE_CLI_FIGURES_H_
#define FLOWTAPE_CLI_FIGURES_H_

#include <string>

#include "autodiff/tensor.h"
#include "training/train.h"
#include "viz/axes.h"
#include "viz/figure.h"

namespace flowtape::cli {

viz::Figure SamplesFigure(const Tensor& data, const Tensor& samples,
                          const viz::Box& box);
viz::Figure LossFigure(const training::TrainResult& result,
                       const std::string& title);

}  // namespace flowtape::cli

#endif  // FLOWTAPE_CLI_FIGURES_H_
