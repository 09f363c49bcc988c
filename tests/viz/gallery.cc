// Writes one example figure of each kind (synthetic data) into the directory
// given as the first argument, to look at:
//   ./bazelw run //tests/viz:gallery -- /tmp/gallery
#include <cmath>
#include <iostream>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tensor.h"
#include "viz/figure.h"
#include "viz/heatmap.h"
#include "viz/histogram.h"
#include "viz/image_grid.h"
#include "viz/lines.h"
#include "viz/loss_curve.h"
#include "viz/reliability.h"
#include "viz/scatter.h"
#include "viz/sphere_map.h"

namespace flowtape::viz {
namespace {

// Two Gaussian bumps.
Tensor LogProb(const Tensor& x) {
  Tensor a =
      -0.5 * Sum(Square(x - Tensor::FromVector(Shape{2}, {1.0, 1.5})), 1);
  Tensor b =
      -2.0 * Sum(Square(x + Tensor::FromVector(Shape{2}, {1.5, 1.0})), 1);
  return Log(0.7 * Exp(a) / (2 * M_PI) + 0.3 * Exp(b) * 4 / (2 * M_PI));
}

Tensor Moons(int n, Rng& rng) {
  Tensor t = Tensor::Zeros(Shape{n, 2});
  for (int i = 0; i < n; ++i) {
    const double u = M_PI * rng.Uniform();
    const bool upper = i % 2 == 0;
    t.mutable_data<double>()[2 * i] =
        (upper ? std::cos(u) : 1 - std::cos(u)) * 1.6 - 0.8 +
        0.08 * rng.Normal();
    t.mutable_data<double>()[2 * i + 1] =
        (upper ? std::sin(u) : 0.5 - std::sin(u)) * 1.6 - 0.4 +
        0.08 * rng.Normal();
  }
  return t;
}

// A figure of `cols` panels a row, or of width x height pixels.
FigureOptions Columns(int cols) {
  FigureOptions options;
  options.cols = cols;
  return options;
}

FigureOptions Size(int width, int height) {
  FigureOptions options;
  options.width = width;
  options.height = height;
  return options;
}

// A point set of a scatter plot (named in the legend unless label is empty).
ScatterSeries Points(const Tensor& points, const std::string& label = "") {
  ScatterSeries series;
  series.label = label;
  series.points = points;
  return series;
}

int Run(const std::string& dir) {
  Rng rng(1);
  auto write = [&](const Figure& f, const std::string& name) {
    absl::Status s = f.Write(dir + "/" + name);
    std::cout << name << ": " << s << "\n";
    return s.ok();
  };
  bool ok = true;
  const Box box{-4, 4, -4, 4};
  {
    Figure f;
    f.Add(DensityHeatmap(LogProb, box).value());
    ok &= write(f, "density.png");
  }
  {
    Figure f;
    DensityHeatmapOptions o;
    o.log_scale = true;
    f.Add(DensityHeatmap(LogProb, box, o).value());
    ok &= write(f, "log_density.png");
  }
  {
    Figure f(Columns(2));
    Scatter data, model;
    data.title = "data";
    data.series = {Points(Moons(4000, rng))};
    data.box = box;
    model.title = "model samples";
    model.series = {Points(Moons(4000, rng))};
    model.series[0].color = SeriesColor(1);
    model.box = box;
    f.Add(data);
    f.Add(model);
    ok &= write(f, "samples.png");
  }
  {
    Figure f;
    Scatter two;
    two.title = "two sets";
    two.series = {Points(Moons(1000, rng), "data"),
                  Points(Moons(1000, rng), "model")};
    f.Add(two);
    ok &= write(f, "scatter_legend.png");
  }
  {
    std::vector<double> train, vs, vl;
    for (int i = 1; i <= 5000; ++i)
      train.push_back(1.2 + 2.0 * std::exp(-i / 600.0) + 0.15 * rng.Normal());
    for (int s = 250; s <= 5000; s += 250) {
      vs.push_back(s);
      vl.push_back(1.25 + 2.0 * std::exp(-s / 600.0));
    }
    Figure f(Columns(2));
    LossCurveOptions linear, log_scale;
    linear.title = "RealNVP on moons";
    log_scale.title = "log scale";
    log_scale.log_y = true;
    f.Add(LossCurve(train, vs, vl, linear).value());
    f.Add(LossCurve(train, vs, vl, log_scale).value());
    ok &= write(f, "loss.png");
  }
  {
    std::vector<double> in, out;
    for (int i = 0; i < 2000; ++i) {
      in.push_back(4.9 + 0.35 * rng.Normal());
      out.push_back(4.0 + 0.5 * rng.Normal());
    }
    Figure f(Size(640, 400));
    Histogram h;
    h.title = "Glow trained on Fashion-MNIST";
    h.xlabel = "bits/dim";
    h.series = {{"Fashion-MNIST test", in}, {"MNIST test", out}};
    h.bins = 60;
    f.Add(h);
    ok &= write(f, "ood_histogram.png");
  }
  {
    Tensor images = Tensor::Zeros(Shape{80, 1, 28, 28});
    for (int k = 0; k < 80; ++k)
      for (int y = 0; y < 28; ++y)
        for (int x = 0; x < 28; ++x)
          images.mutable_data<double>()[(k * 28 + y) * 28 + x] =
              std::exp(-(std::pow(x - 14 - (k % 8) + 4, 2) +
                         std::pow(y - 14 - (k / 8) % 5 + 2, 2)) /
                       20.0) +
              0.1 * rng.Uniform();
    std::vector<std::string> rows;
    for (int k = 0; k < 10; ++k) rows.push_back(std::to_string(k));
    Figure f(Size(560, 680));
    ImageGrid grid;
    grid.title = "Glow samples (MNIST)";
    grid.images = images;
    grid.row_labels = rows;
    f.Add(grid);
    ok &= write(f, "image_grid.png");
  }
  {
    Figure f(Columns(2));
    for (int m = 0; m < 4; ++m) {
      Reliability r;
      r.title = m == 0 ? "uncalibrated" : "temperature (T = 1.31)";
      for (int b = 0; b < 15; ++b) {
        const double conf = (b + 0.5) / 15;
        r.confidence.push_back(conf);
        r.accuracy.push_back(std::pow(conf, m == 0 ? 1.6 : 1.05));
        r.count.push_back(b < 3 ? 0 : 100 * b);
      }
      r.legend = m == 0;
      f.Add(r);
    }
    ok &= write(f, "reliability.png");
  }
  {
    Tensor pts = Tensor::Zeros(Shape{500, 3});
    for (int i = 0; i < 500; ++i) {
      const double lat = (35 + 8 * rng.Normal()) * M_PI / 180;
      const double lon = (140 + 10 * rng.Normal()) * M_PI / 180;
      pts.mutable_data<double>()[3 * i] = std::cos(lat) * std::cos(lon);
      pts.mutable_data<double>()[3 * i + 1] = std::cos(lat) * std::sin(lon);
      pts.mutable_data<double>()[3 * i + 2] = std::sin(lat);
    }
    auto vmf = [](const Tensor& x) {
      const double m[3] = {std::cos(0.6) * std::cos(2.44),
                           std::cos(0.6) * std::sin(2.44), std::sin(0.6)};
      Tensor mu = Tensor::FromVector(Shape{3}, {m[0], m[1], m[2]});
      return 8.0 * Sum(x * mu, 1) + std::log(8.0 / (4 * M_PI * std::sinh(8.0)));
    };
    SpherePoints events;
    events.label = "test events";
    events.points = pts;
    Figure f(Size(960, 480));
    SphereMap map = SphereDensityMap(vmf).value();
    map.title = "earthquake: model density and test points";
    map.points.push_back(events);
    f.Add(map);
    ok &= write(f, "sphere_density.png");
    Figure g(Size(960, 480));
    SphereMap only_points;
    only_points.title = "events";
    only_points.points = {events};
    g.Add(only_points);
    ok &= write(g, "sphere_points.png");
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace flowtape::viz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: gallery DIR\n";
    return 2;
  }
  return flowtape::viz::Run(argv[1]);
}
