// Links flowtape::flowtape and uses several packages: every zoo family that
// takes 2-D vectors gives finite log-probs (models, flows, flows/cnf, ode),
// the installed earth catalogue loads (data), a cairo figure is written as PNG
// and read back (viz), and flowtape/version.h agrees with find_package's
// flowtape_VERSION.
#include <cmath>
#include <cstdio>
#include <string>

#include "autodiff/tape.h"
#include "data/earth.h"
#include "flowtape/version.h"
#include "models/zoo.h"
#include "viz/figure.h"
#include "viz/png.h"
#include "viz/scatter.h"

using namespace flowtape;  // NOLINT

int main(int argc, char** argv) {
  int failures = 0;
  auto fail = [&](const std::string& what) {
    std::printf("FAIL %s\n", what.c_str());
    ++failures;
  };
  std::printf("flowtape %s\n", FLOWTAPE_VERSION_STRING);
  if (std::string(FLOWTAPE_VERSION_STRING) != EXPECTED_VERSION)
    fail(std::string("version.h says ") + FLOWTAPE_VERSION_STRING +
         ", flowtapeConfigVersion.cmake " + EXPECTED_VERSION);

  NoGradScope no_grad;
  Rng rng(0);
  const Tensor x = Tensor::FromVector({3, 2}, {0.1, -0.2, 1.0, 0.5, -1.5, 2.0});
  int families = 0;
  for (const std::string& name : models::ZooNames()) {
    if (!models::FindFlow(name, models::Domain::kVectors).ok()) continue;
    models::ModelConfig config;
    config.layers = 2;
    config.hidden = {8};
    auto model = models::MakeModel(name, config, rng);
    if (!model.ok()) {
      fail(name + ": " + model.status().ToString());
      continue;
    }
    for (double v : (*model)->LogProb(x, Tensor(), &rng).ToVector())
      if (!std::isfinite(v)) fail(name + ": non-finite log-prob");
    ++families;
  }
  std::printf("%d zoo families on 2-D vectors\n", families);
  if (families < 5) fail("fewer than 5 zoo families");

  auto volcano =
      data::LoadEarthCsv(std::string(EARTH_DATA_DIR) + "/volcano.csv");
  if (!volcano.ok())
    fail(volcano.status().ToString());
  else
    std::printf("volcano: %lld points\n",
                static_cast<long long>(volcano->dim(0)));

  // A cairo-drawn figure (viz), written and read back.
  const std::string png = argc > 1 ? argv[1] : "umbrella_check.png";
  viz::FigureOptions options;
  options.title = "umbrella_check";
  viz::Figure figure(options);
  viz::ScatterSeries series;
  series.points = x;
  viz::Scatter scatter;
  scatter.title = "points";
  scatter.series = {series};
  figure.Add(scatter);
  absl::Status written = figure.Write(png);
  auto read = written.ok() ? viz::ReadPng(png) : written;
  if (!read.ok() || read->width != figure.width() ||
      read->height != figure.height())
    fail("figure PNG: " + read.status().ToString());
  return failures == 0 ? 0 : 1;
}
