#include "cli/figures.h"

#include <vector>

#include "viz/colormap.h"
#include "viz/loss_curve.h"
#include "viz/scatter.h"

namespace flowtape::cli {
namespace {

viz::Scatter Panel(const std::string& title, const Tensor& points,
                   const viz::Box& box, int color) {
  viz::Scatter s;
  s.title = title;
  s.box = box;
  viz::ScatterSeries series;
  series.points = points;
  series.color = viz::SeriesColor(color);
  series.radius = 1.2;
  series.alpha = 0.35;
  s.series.push_back(series);
  return s;
}

}  // namespace

viz::Figure SamplesFigure(const Tensor& data, const Tensor& samples,
                          const viz::Box& box) {
  viz::Figure figure;
  if (data.defined()) figure.Add(Panel("data", data, box, 0));
  figure.Add(Panel("model samples", samples, box, 1));
  return figure;
}

viz::Figure LossFigure(const training::TrainResult& result,
                       const std::string& title) {
  std::vector<double> val_steps, val_nll;
  for (const auto& [step, nll] : result.val_history) {
    val_steps.push_back(static_cast<double>(step));
    val_nll.push_back(nll);
  }
  viz::LossCurveOptions options;
  options.title = title;
  viz::FigureOptions size;
  size.width = 640;
  size.height = 420;
  viz::Figure figure(size);
  // Equal lengths and valid options: LossCurve cannot refuse them.
  figure.Add(*viz::LossCurve(result.losses, val_steps, val_nll, options));
  return figure;
}

}  // namespace flowtape::cli
