// Each panel kind drawn into a figure: the ink lands where the returned data
// -> pixel map says (a density's peak, a scatter's quadrant, a line's points,
// histogram bar heights, an image grid's pixels, reliability bars, points and
// densities on the sphere), and bad input is an InvalidArgument Status.
#include <cmath>
#include <string>

#include "absl/strings/match.h"
#include "autodiff/ops.h"
#include "gtest/gtest.h"
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

// A density map of `resolution` cells a side (linear or log scale).
DensityHeatmapOptions HeatmapOptions(int resolution, bool log_scale = false) {
  DensityHeatmapOptions options;
  options.resolution = resolution;
  options.log_scale = log_scale;
  return options;
}

// A sphere density map of nlon x nlat cells.
SphereDensityOptions SphereGrid(int nlon, int nlat) {
  SphereDensityOptions options;
  options.nlon = nlon;
  options.nlat = nlat;
  return options;
}

template <typename P>
Rendering RenderOne(const P& panel, int width = kCellWidth,
                    int height = kCellHeight) {
  FigureOptions o;
  o.width = width;
  o.height = height;
  Figure f(o);
  f.Add(panel);
  absl::StatusOr<Rendering> r = f.Render();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : Rendering{};
}

template <typename P>
absl::Status DrawError(const P& panel) {
  Figure f;
  f.Add(panel);
  return f.Render().status();
}

Rgb At(const Rendering& r, double px, double py) {
  return r.image.at(static_cast<int>(std::floor(px)),
                    static_cast<int>(std::floor(py)));
}
Rgb AtData(const Rendering& r, double x, double y) {
  return At(r, r.axes[0].PixelX(x), r.axes[0].PixelY(y));
}
bool White(Rgb c) { return c.r == 255 && c.g == 255 && c.b == 255; }
bool Near(Rgb c, const Color& want, int tol = 12) {
  const Rgb w = ToRgb(want);
  return std::abs(c.r - w.r) <= tol && std::abs(c.g - w.g) <= tol &&
         std::abs(c.b - w.b) <= tol;
}
// Non-white pixels strictly inside a data box (away from frame and ticks).
int InkIn(const Rendering& r, double x0, double x1, double y0, double y1) {
  const Axes& a = r.axes[0];
  int n = 0;
  for (int py = static_cast<int>(a.PixelY(y1)) + 2;
       py < static_cast<int>(a.PixelY(y0)) - 2; ++py)
    for (int px = static_cast<int>(a.PixelX(x0)) + 2;
         px < static_cast<int>(a.PixelX(x1)) - 2; ++px)
      n += !White(r.image.at(px, py));
  return n;
}

Tensor Gaussian(const Tensor& p, double mx, double my) {
  Tensor d = p - Tensor::FromVector(Shape{2}, {mx, my});
  return -0.5 * Sum(Square(d), 1) - std::log(2 * M_PI);
}

TEST(Heatmap, BrightestPixelIsAtTheDensityPeak) {
  Heatmap h = DensityHeatmap([](const Tensor& p) { return Gaussian(p, 1, 2); },
                             {-4, 4, -4, 4}, HeatmapOptions(160))
                  .value();
  EXPECT_EQ(h.colorbar_label, "p(x)");
  Rendering r = RenderOne(h);
  const Axes& a = r.axes[0];
  // The brightest (most yellow: R + G) pixel of the plot area.
  int best = -1;
  double bx = 0, by = 0;
  for (int py = static_cast<int>(a.area.y); py < a.area.bottom(); ++py)
    for (int px = static_cast<int>(a.area.x); px < a.area.right(); ++px) {
      const Rgb c = r.image.at(px, py);
      if (c.r + c.g > best) best = c.r + c.g, bx = px + 0.5, by = py + 0.5;
    }
  EXPECT_NEAR(a.DataX(bx), 1.0, 0.1);
  EXPECT_NEAR(a.DataY(by), 2.0, 0.1);
  EXPECT_TRUE(Near(AtData(r, 1, 2), Viridis(1.0)));
  EXPECT_TRUE(Near(AtData(r, -3, -3), Viridis(0.0)));
  // The colour scale is p itself: max 1 / (2 pi) at the peak.
  double top = 0;
  for (double v : h.values) top = std::max(top, v);
  EXPECT_NEAR(top, 1 / (2 * M_PI), 1e-3);
}

TEST(Heatmap, LogScaleShowsTenNatsBelowTheMaximum) {
  Heatmap h =
      DensityHeatmap([](const Tensor& p) { return Gaussian(p, 0, 0); },
                     {-4, 4, -4, 4}, HeatmapOptions(80, /*log_scale=*/true))
          .value();
  EXPECT_EQ(h.colorbar_label, "log p(x)");
  EXPECT_NEAR(h.vmax - h.vmin, 10.0, 1e-12);
  Rendering r = RenderOne(h);
  // log p = max - 5 on the circle |x| = sqrt(10): the middle colour.
  EXPECT_TRUE(Near(AtData(r, std::sqrt(10.0), 0), Viridis(0.5), 20));
}

// Options, boxes and log_probs that cannot make a map are a Status naming
// the problem (no abort).
TEST(Heatmap, BadDensityOptionsAreInvalidArgument) {
  auto lp = [](const Tensor& p) { return Gaussian(p, 0, 0); };
  const Box box{-4, 4, -4, 4};
  auto expect = [](const absl::StatusOr<Heatmap>& h, const std::string& what) {
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(h.status().message().find(what), std::string::npos) << h.status();
  };
  expect(DensityHeatmap(lp, box, HeatmapOptions(0)), "resolution = 0");
  expect(DensityHeatmap(lp, box, HeatmapOptions(-3)), "resolution = -3");
  expect(DensityHeatmap(lp, box, HeatmapOptions(5000)), "resolution = 5000");
  DensityHeatmapOptions nan_range;
  nan_range.log_scale = true;
  nan_range.log_range = NAN;
  expect(DensityHeatmap(lp, box, nan_range), "log_range = nan");
  expect(DensityHeatmap(lp, {1, 1, -4, 4}), "empty or non-finite box");
  expect(DensityHeatmap(lp, {-4, 4, -4, INFINITY}), "empty or non-finite box");
  expect(DensityHeatmap([](const Tensor&) { return Tensor::Zeros({3}); }, box,
                        HeatmapOptions(4)),
         "log_prob returned [3] for 4 points");
  EXPECT_TRUE(DensityHeatmap(lp, box, HeatmapOptions(4)).ok());
}

TEST(Heatmap, BadGridsAreInvalidArgument) {
  Heatmap h;
  h.box = {0, 1, 0, 1};
  h.nx = 3;
  h.ny = 2;
  h.values = {1, 2, 3};
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
  h.values = {NAN, NAN, NAN, NAN, NAN, NAN};
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
  h.values = {1, 2, 3, 4, 5, 6};
  h.box = {1, 1, 0, 1};
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Scatter, InkLandsInTheRightQuadrant) {
  // 200 points around (2, 2) and the non-finite rows, which are skipped.
  std::vector<double> v;
  for (int i = 0; i < 200; ++i) {
    v.push_back(2 + 0.5 * std::cos(i));
    v.push_back(2 + 0.5 * std::sin(3 * i));
  }
  for (double bad : {double{NAN}, double{INFINITY}, -double{INFINITY}, 1e300}) {
    v.push_back(bad);
    v.push_back(0.0);
  }
  Scatter s;
  s.box = Box{-4, 4, -4, 4};
  ScatterSeries series;
  series.points = Tensor::FromVector(Shape{204, 2}, v);
  s.series.push_back(series);
  Rendering r = RenderOne(s);
  EXPECT_GT(InkIn(r, 0, 4, 0, 4), 100);
  EXPECT_EQ(InkIn(r, -4, 0, 0, 4), 0);
  EXPECT_EQ(InkIn(r, -4, 0, -4, 0), 0);
  EXPECT_EQ(InkIn(r, 0, 4, -4, 0), 0);
  // The dot at the centre of the cloud has the series colour (blue).
  const Rgb c = AtData(r, 2.5, 2.0);
  EXPECT_LT(c.r, c.b);
}

TEST(Scatter, PointsMustBeRowsOfTwo) {
  Scatter s;
  ScatterSeries bad;
  bad.points = Tensor::Zeros(Shape{5, 3});
  s.series.push_back(bad);
  absl::Status st = DrawError(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "[5, 3]")) << st;
  s.series[0].points = Tensor();
  EXPECT_EQ(DrawError(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Lines, InkFollowsTheSeries) {
  Lines l;
  LineSeries s;
  s.x = {0, 10};
  s.y = {0, 10};
  s.width = 3;
  l.series.push_back(s);
  l.box = Box{0, 10, 0, 10};
  Rendering r = RenderOne(l);
  const Rgb on = AtData(r, 5, 5);
  EXPECT_TRUE(Near(on, SeriesColor(0), 40));
  EXPECT_TRUE(White(AtData(r, 5, 9)));
  EXPECT_TRUE(White(AtData(r, 5, 1)));
  // log y: y = 10^x is straight, and 10 is half way up [1, 100].
  Lines g;
  LineSeries e;
  for (int i = 0; i <= 20; ++i) {
    e.x.push_back(0.1 * i);
    e.y.push_back(std::pow(10.0, 0.1 * i));
  }
  e.width = 3;
  g.series.push_back(e);
  g.log_y = true;
  g.box = Box{0, 2, 1, 100};
  Rendering lr = RenderOne(g);
  const Axes& a = lr.axes[0];
  EXPECT_NEAR(a.PixelY(10), a.area.y + a.area.h / 2, 1e-9);
  EXPECT_TRUE(
      Near(At(lr, a.PixelX(1), a.area.y + a.area.h / 2), SeriesColor(0), 40));
}

TEST(Lines, BadSeriesAreInvalidArgument) {
  Lines l;
  LineSeries s;
  s.x = {0, 1, 2};
  s.y = {0, 1};
  l.series.push_back(s);
  EXPECT_EQ(DrawError(l).code(), absl::StatusCode::kInvalidArgument);
  l.series[0].y = {1, 0, 2};
  l.log_y = true;
  EXPECT_EQ(DrawError(l).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LossCurve, RunningMeanAndValidationSeries) {
  LossCurveOptions options;
  options.title = "t";
  options.smooth = 3;
  Lines l =
      LossCurve({5, 4, 3, 2, 1, NAN}, {2, 4}, {4.5, 2.5}, options).value();
  ASSERT_EQ(l.series.size(), 3u);  // raw, mean, validation
  EXPECT_EQ(l.series[0].x, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(l.series[0].label.empty());
  // Means of steps 1-3, 2-4, 3-5 and of the finite losses of 4-6.
  EXPECT_EQ(l.series[1].x, (std::vector<double>{3, 4, 5, 6}));
  EXPECT_EQ(l.series[1].y, (std::vector<double>{4, 3, 2, 1.5}));
  EXPECT_EQ(l.series[1].label, "train (mean of 3 steps)");
  EXPECT_EQ(l.series[2].label, "validation");
  EXPECT_EQ(l.series[2].x, (std::vector<double>{2, 4}));
  EXPECT_EQ(l.xlabel, "step");
  Rendering r = RenderOne(l);
  // The validation line passes through (3, 3.5).
  EXPECT_TRUE(Near(AtData(r, 3, 3.5), SeriesColor(1), 60));
  // Mismatched validation vectors and a negative window: InvalidArgument.
  EXPECT_EQ(LossCurve({1, 2}, {1}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.smooth = -1;
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LossCurve({1, 2}, {}, {}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Histogram, BarsAreDensities) {
  std::vector<double> s(100, 0.0);
  for (int i = 0; i < 25; ++i) s[i] = 1.0;
  s.push_back(NAN);
  s.push_back(7.0);  // outside the given range
  EXPECT_EQ(HistogramDensity(s, 2, 0, 1), (std::vector<double>{1.5, 0.5}));
  EXPECT_TRUE(HistogramDensity({5}, 2, 0, 1).empty());
  Histogram h;
  h.series.push_back({"", s, std::nullopt});
  h.bins = 2;
  h.lo = 0;
  h.hi = 1;
  Rendering r = RenderOne(h);
  EXPECT_FALSE(White(AtData(r, 0.25, 1.45)));
  EXPECT_TRUE(White(AtData(r, 0.25, 1.55)));
  EXPECT_FALSE(White(AtData(r, 0.75, 0.45)));
  EXPECT_TRUE(White(AtData(r, 0.75, 0.55)));
  // Automatic range: from the smallest to the largest finite value.
  Histogram a;
  a.series.push_back({"", {2, 3, 3, 4, NAN, INFINITY}, std::nullopt});
  Rendering ar = RenderOne(a);
  EXPECT_DOUBLE_EQ(ar.axes[0].x.lo, 2);
  EXPECT_DOUBLE_EQ(ar.axes[0].x.hi, 4);
}

TEST(Histogram, BadRangesAreInvalidArgument) {
  Histogram h;
  h.series.push_back({"", {0.0, 1.0}, std::nullopt});
  h.bins = 0;
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
  h.bins = 10;
  h.lo = -INFINITY;
  h.hi = 1;
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
  h.lo = 2;
  h.hi = 1;
  EXPECT_EQ(DrawError(h).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ImageGrid, TilesLandWhereTheMapSays) {
  Tensor imgs = Tensor::Zeros(Shape{5, 1, 4, 6});
  imgs.mutable_data<double>()[4 * 24 + 2 * 6 + 5] = 1.0;  // image 4, (x 5, y 2)
  Image tiles = TileImages(imgs, 3, 1).value();
  EXPECT_EQ(tiles.width, 3 * 6 + 2);
  EXPECT_EQ(tiles.height, 2 * 4 + 1);
  ImageGrid g;
  g.title = "samples";
  g.images = imgs;
  g.cols = 3;
  g.pad = 1;
  Rendering r = RenderOne(g);
  const Axes& a = r.axes[0];
  // Whole-number upscaling.
  const double scale = a.area.w / tiles.width;
  EXPECT_EQ(scale, std::floor(scale));
  EXPECT_GE(scale, 2);
  // Image 4 is row 1, column 1: its origin in grid pixels is (7, 5).
  auto grid_pixel = [&](double gx, double gy) {
    return At(r, a.PixelX(gx + 0.5), a.PixelY(gy + 0.5));
  };
  EXPECT_TRUE(White(grid_pixel(7 + 5, 5 + 2)));
  EXPECT_EQ(grid_pixel(7 + 4, 5 + 2).r, 0);
  EXPECT_EQ(grid_pixel(7, 5).r, 0);
  EXPECT_TRUE(White(grid_pixel(6, 5)));  // the pad column
}

TEST(ImageGrid, BadBatchesAreInvalidArgument) {
  ImageGrid g;
  g.images = Tensor::Zeros(Shape{2, 2, 4, 4});  // 2 channels
  EXPECT_EQ(DrawError(g).code(), absl::StatusCode::kInvalidArgument);
  g.images = Tensor::Zeros(Shape{2, 16});
  EXPECT_EQ(DrawError(g).code(), absl::StatusCode::kInvalidArgument);
  g.images = Tensor::Zeros(Shape{2, 1, 4, 4});
  g.cols = 0;
  EXPECT_EQ(DrawError(g).code(), absl::StatusCode::kInvalidArgument);
  g.cols = 2;
  g.row_labels = {"a", "b"};  // one row
  EXPECT_EQ(DrawError(g).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Reliability, BarsReachTheAccuracyAndGapsTheConfidence) {
  Reliability rel;
  rel.accuracy = {0.0, 0.3, 0.9, 0.6};
  rel.confidence = {0.0, 0.35, 0.6, 0.9};
  rel.count = {0, 10, 10, 10};
  Rendering r = RenderOne(rel, 500, 500);
  const Color bar = SeriesColor(0);
  // Bin 2 = [0.5, 0.75]: bar up to 0.9; underconfident, the gap 0.6-0.9 is
  // shaded inside it.
  EXPECT_TRUE(Near(AtData(r, 0.58, 0.3), bar, 40));
  EXPECT_FALSE(White(AtData(r, 0.58, 0.88)));
  EXPECT_TRUE(White(AtData(r, 0.58, 0.93)));
  // Bin 3 = [0.75, 1]: bar to 0.6, red hatching above it to 0.9, white
  // above that.
  EXPECT_TRUE(Near(AtData(r, 0.85, 0.3), bar, 40));
  auto red = [&](double x0, double x1, double y0, double y1) {
    const Axes& a = r.axes[0];
    int n = 0;
    for (int py = static_cast<int>(a.PixelY(y1)); py < a.PixelY(y0); ++py)
      for (int px = static_cast<int>(a.PixelX(x0)); px < a.PixelX(x1); ++px) {
        const Rgb c = r.image.at(px, py);
        n += c.r > c.b + 60 && c.r > c.g + 60;
      }
    return n;
  };
  EXPECT_GT(red(0.77, 0.98, 0.62, 0.88), 50);
  EXPECT_EQ(red(0.77, 0.98, 0.05, 0.55), 0);
  EXPECT_EQ(red(0.77, 0.98, 0.92, 0.97), 0);
  EXPECT_TRUE(White(AtData(r, 0.8, 0.95)));
  // Empty bin 0: nothing but the diagonal near it.
  EXPECT_TRUE(White(AtData(r, 0.2, 0.05)));
}

TEST(Reliability, MismatchedBinsAreInvalidArgument) {
  Reliability rel;
  rel.accuracy = {0.5};
  rel.confidence = {0.5, 0.6};
  rel.count = {1, 1};
  EXPECT_EQ(DrawError(rel).code(), absl::StatusCode::kInvalidArgument);
  rel.accuracy = {0.5, 0.6};
  rel.count = {1, -1};
  EXPECT_EQ(DrawError(rel).code(), absl::StatusCode::kInvalidArgument);
}

Tensor UnitVectors(const std::vector<std::pair<double, double>>& lon_lat) {
  std::vector<double> v;
  for (auto [lon, lat] : lon_lat) {
    const double a = lon * M_PI / 180, b = lat * M_PI / 180;
    v.insert(v.end(), {std::cos(b) * std::cos(a), std::cos(b) * std::sin(a),
                       std::sin(b)});
  }
  return Tensor::FromVector(Shape{static_cast<int64_t>(lon_lat.size()), 3}, v);
}

TEST(SphereMap, LonLatOfUnitVectors) {
  Tensor t = UnitVectors({{-120, 35}, {170, -80}, {0, 90}});
  for (int i = 0; i < 2; ++i) {
    double lon, lat;
    ToLonLat(t.data<double>() + 3 * i, &lon, &lat);
    EXPECT_NEAR(lon, i == 0 ? -120 : 170, 1e-9);
    EXPECT_NEAR(lat, i == 0 ? 35 : -80, 1e-9);
  }
  const double twice[3] = {0, 2, 0};
  double lon, lat;
  ToLonLat(twice, &lon, &lat);
  EXPECT_NEAR(lon, 90, 1e-12);
  EXPECT_NEAR(lat, 0, 1e-12);
}

TEST(SphereMap, PointsLandAtTheirLongitudeAndLatitude) {
  SphereMap m;
  m.coastlines = "";
  SpherePoints p;
  p.points = UnitVectors({{90, 45}, {90, 45}, {90, 45}});
  p.radius = 4;
  p.alpha = 1;
  m.points.push_back(p);
  Rendering r = RenderOne(m, 800, 450);
  const Axes& a = r.axes[0];
  EXPECT_NEAR(a.area.h / a.area.w, 0.5, 0.01);
  EXPECT_TRUE(Near(AtData(r, 90, 45), SeriesColor(3), 10));
  EXPECT_FALSE(Near(AtData(r, -90, 45), SeriesColor(3), 60));
  EXPECT_FALSE(Near(AtData(r, 90, -45), SeriesColor(3), 60));
}

TEST(SphereMap, BadDensityOptionsAreInvalidArgument) {
  auto lp = [](const Tensor& x) { return Sum(x, 1); };
  auto expect = [](const absl::StatusOr<SphereMap>& m,
                   const std::string& what) {
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(what), std::string::npos) << m.status();
  };
  SphereDensityOptions no_lon;
  no_lon.nlon = 0;
  expect(SphereDensityMap(lp, no_lon), "nlon = 0");
  expect(SphereDensityMap(lp, SphereGrid(4, -1)), "nlat = -1");
  SphereDensityOptions negative_range = SphereGrid(4, 2);
  negative_range.log_range = -1;
  expect(SphereDensityMap(lp, negative_range), "log_range = -1");
  expect(SphereDensityMap([](const Tensor&) { return Tensor::Zeros({2}); },
                          SphereGrid(4, 2)),
         "log_prob returned [2] for 4 points");
  EXPECT_TRUE(SphereDensityMap(lp, SphereGrid(4, 2)).ok());
}

TEST(SphereMap, DensityPeaksAtTheMeanDirection) {
  // von Mises-Fisher with mean direction (lon -60, lat 20), kappa 10.
  Tensor mu = UnitVectors({{-60, 20}});
  auto vmf = [&](const Tensor& x) {
    return 10.0 * Sum(x * Reshape(mu, {3}), 1);
  };
  SphereMap m = SphereDensityMap(vmf, SphereGrid(180, 90)).value();
  m.coastlines = "";
  EXPECT_EQ(m.colorbar_label, "log p(x)");
  Rendering r = RenderOne(m, 900, 450);
  const Axes& a = r.axes[0];
  int best = -1;
  double bx = 0, by = 0;
  for (int py = static_cast<int>(a.area.y) + 1; py < a.area.bottom() - 1; ++py)
    for (int px = static_cast<int>(a.area.x) + 1; px < a.area.right() - 1;
         ++px) {
      const Rgb c = r.image.at(px, py);
      if (c.r + c.g > best) best = c.r + c.g, bx = px + 0.5, by = py + 0.5;
    }
  EXPECT_NEAR(a.DataX(bx), -60, 3);
  EXPECT_NEAR(a.DataY(by), 20, 3);
}

TEST(SphereMap, CoastlinesFromTheShapefile) {
  // bazelw installs libplplot-data, which ships Natural Earth's coastlines.
  ASSERT_FALSE(DefaultCoastlines().empty());
  SphereMap with, without;
  without.coastlines = "";
  // Dark coastline ink (the grid lines are light grey-blue).
  auto dark = [](const Rendering& r) {
    int n = 0;
    const Axes& a = r.axes[0];
    for (int py = static_cast<int>(a.area.y) + 2; py < a.area.bottom() - 2;
         ++py)
      for (int px = static_cast<int>(a.area.x) + 2; px < a.area.right() - 2;
           ++px) {
        const Rgb c = r.image.at(px, py);
        n += c.r + c.g + c.b < 3 * 150;
      }
    return n;
  };
  const Rendering rw = RenderOne(with, 800, 450);
  EXPECT_GT(dark(rw), 1000);
  EXPECT_EQ(dark(RenderOne(without, 800, 450)), 0);
  // The middle of the Sahara and of the Pacific are neither coast.
  EXPECT_FALSE(Near(AtData(rw, 15, 22), {0.25, 0.25, 0.25}, 60));
  // A missing shapefile is NotFound; points must be [N, 3].
  SphereMap missing;
  missing.coastlines = "/nonexistent/globe.shp";
  absl::Status s = DrawError(missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "/nonexistent/globe.shp")) << s;
  SphereMap bad;
  bad.coastlines = "";
  SpherePoints p;
  p.points = Tensor::Zeros(Shape{4, 2});
  bad.points.push_back(p);
  EXPECT_EQ(DrawError(bad).code(), absl::StatusCode::kInvalidArgument);
  bad.points.clear();
  bad.values = {1, 2, 3};
  bad.nlon = 2;
  bad.nlat = 2;
  EXPECT_EQ(DrawError(bad).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::viz
