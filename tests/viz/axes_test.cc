// Ticks, tick labels, the data -> pixel map, automatic ranges, the colour
// map, and where a legend goes.
#include "viz/axes.h"

#include <cmath>

#include "gtest/gtest.h"
#include "viz/canvas.h"
#include "viz/colormap.h"
#include "viz/legend.h"

namespace flowtape::viz {
namespace {

using Strings = std::vector<std::string>;

TEST(Ticks, NiceStepsOfOneTwoFive) {
  EXPECT_EQ(NiceTicks(-4, 4), (std::vector<double>{-4, -2, 0, 2, 4}));
  EXPECT_EQ(NiceTicks(0, 1), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1}));
  // Step 5 over [3, 27]: only the multiples inside the range.
  EXPECT_EQ(NiceTicks(3, 27), (std::vector<double>{5, 10, 15, 20, 25}));
  // A reversed range ticks the same values.
  EXPECT_EQ(NiceTicks(4, -4), NiceTicks(-4, 4));
  // Zero is exactly 0, not 1e-17.
  for (double t : NiceTicks(-0.3, 0.3)) EXPECT_TRUE(t != 0 || !std::signbit(t));
  EXPECT_TRUE(NiceTicks(1, 1).empty());
  EXPECT_TRUE(NiceTicks(0, INFINITY).empty());
  EXPECT_TRUE(NiceTicks(NAN, 1).empty());
  // Far from zero, where t += step would stall: still a bounded set.
  const std::vector<double> far = NiceTicks(-1e17, -1e17 + 64);
  EXPECT_GE(far.size(), 1u);
  EXPECT_LE(far.size(), 21u);
}

TEST(Ticks, LogTicksAreDecadesThenOneTwoFive) {
  EXPECT_EQ(LogTicks(0.5, 2000), (std::vector<double>{1, 10, 100, 1000}));
  EXPECT_EQ(LogTicks(1.5, 60), (std::vector<double>{2, 5, 10, 20, 50}));
  // Within a factor of 3: linear nice ticks.
  EXPECT_EQ(LogTicks(1.1, 2.9), NiceTicks(1.1, 2.9));
  // Thirty decades: at most 8 labels.
  EXPECT_LE(LogTicks(1e-15, 1e15).size(), 8u);
  EXPECT_TRUE(LogTicks(-1, 10).empty());
}

TEST(Ticks, LabelsShareOneFormat) {
  EXPECT_EQ(FormatTicks({0, 0.5, 1, 1.5}),
            (Strings{"0.0", "0.5", "1.0", "1.5"}));
  EXPECT_EQ(FormatTicks({-2, 0, 2}), (Strings{"\u22122", "0", "2"}));
  EXPECT_EQ(FormatTicks({0.05, 0.1}), (Strings{"0.05", "0.10"}));
  EXPECT_EQ(FormatTicks({1e6, 2e6}), (Strings{"1e+06", "2e+06"}));
  EXPECT_EQ(FormatTicks({0.01, 1, 100}, /*log=*/true),
            (Strings{"10\u207b\u00b2", "10\u2070", "10\u00b2"}));
  EXPECT_EQ(FormatTicks({-0.0}), (Strings{"0"}));
}

TEST(Axes, MapsDataToPixelsAndBack) {
  Axes a{{100, 50, 400, 200}, MakeAxis(-4, 4), MakeAxis(0, 1)};
  EXPECT_DOUBLE_EQ(a.PixelX(-4), 100);
  EXPECT_DOUBLE_EQ(a.PixelX(4), 500);
  EXPECT_DOUBLE_EQ(a.PixelX(0), 300);
  EXPECT_DOUBLE_EQ(a.PixelY(0), 250);  // y upwards
  EXPECT_DOUBLE_EQ(a.PixelY(1), 50);
  EXPECT_DOUBLE_EQ(a.DataX(a.PixelX(1.25)), 1.25);
  EXPECT_DOUBLE_EQ(a.DataY(a.PixelY(0.3)), 0.3);
  // Log axis: 10 is half way between 1 and 100.
  Axes l{{0, 0, 100, 100}, MakeAxis(0, 1), MakeAxis(1, 100, "", true)};
  EXPECT_NEAR(l.PixelY(10), 50, 1e-12);
  EXPECT_NEAR(l.DataY(25), std::pow(10.0, 1.5), 1e-9);
  // Reversed axis (image rows).
  Axes r{{0, 0, 100, 100}, MakeAxis(0, 10), MakeAxis(10, 0)};
  EXPECT_DOUBLE_EQ(r.PixelY(0), 0);
  EXPECT_DOUBLE_EQ(r.PixelY(10), 100);
}

TEST(Axes, AutomaticRanges) {
  double lo = INFINITY, hi = -INFINITY;
  IncludeInRange({3, NAN, -1, INFINITY}, lo, hi);
  EXPECT_EQ(lo, -1);
  EXPECT_EQ(hi, 3);
  PadRange(lo, hi, 0.25);
  EXPECT_EQ(lo, -2);
  EXPECT_EQ(hi, 4);
  double a = 2, b = 2;
  PadRange(a, b, 0);
  EXPECT_EQ(a, 1.5);
  EXPECT_EQ(b, 2.5);
  double c = INFINITY, d = -INFINITY;
  PadRange(c, d, 0);
  EXPECT_EQ(c, 0);
  EXPECT_EQ(d, 1);
}

TEST(Axes, LayoutLeavesRoomAndKeepsAspect) {
  Canvas canvas(480, 420);
  const Rect cell{0, 0, 480, 420};
  Axes a = LayoutAxes(canvas, cell, "title", MakeAxis(-4, 4, "x"),
                      MakeAxis(-4, 4, "y"), 0, /*aspect=*/1.0)
               .value();
  EXPECT_DOUBLE_EQ(a.area.w, a.area.h);
  EXPECT_GT(a.area.x, 30);          // room for tick labels and the y label
  EXPECT_GT(a.area.y, 15);          // room for the title
  EXPECT_LT(a.area.bottom(), 380);  // room for tick labels and the x label
  EXPECT_LE(a.area.right(), 480);
  Axes wide =
      LayoutAxes(canvas, cell, "", MakeAxis(0, 1), MakeAxis(0, 1), 100).value();
  EXPECT_LE(wide.area.right(), 480 - 100);
  // Too small to plot, or a log axis over non-positive values.
  EXPECT_EQ(
      LayoutAxes(canvas, {0, 0, 60, 40}, "t", MakeAxis(0, 1), MakeAxis(0, 1))
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(LayoutAxes(canvas, cell, "", MakeAxis(0, 1),
                          MakeAxis(0, 10, "", /*log=*/true))
                   .ok());
  EXPECT_FALSE(
      LayoutAxes(canvas, cell, "", MakeAxis(0, NAN), MakeAxis(0, 1)).ok());
}

TEST(Colormap, ViridisEndsAndColorize) {
  const Rgb lo = ToRgb(Viridis(0)), hi = ToRgb(Viridis(1));
  EXPECT_EQ(lo.r, 68);
  EXPECT_EQ(lo.b, 84);
  EXPECT_EQ(hi.r, 253);
  EXPECT_EQ(hi.g, 231);
  // Colorize clamps, and NaN stays white.
  Image im = Colorize(4, 1, {-INFINITY, 0.0, 1.0, NAN}, 0.0, 1.0);
  EXPECT_EQ(im.at(0, 0).r, lo.r);
  EXPECT_EQ(im.at(1, 0).r, lo.r);
  EXPECT_EQ(im.at(2, 0).g, hi.g);
  EXPECT_EQ(im.at(3, 0).g, 255);
  double vmin = NAN, vmax = NAN;
  ASSERT_TRUE(ColorRange({2, NAN, 5, -INFINITY}, vmin, vmax).ok());
  EXPECT_EQ(vmin, 2);
  EXPECT_EQ(vmax, 5);
  vmin = vmax = NAN;
  EXPECT_EQ(ColorRange({NAN, INFINITY}, vmin, vmax).code(),
            absl::StatusCode::kInvalidArgument);
  vmin = 3, vmax = 1;
  EXPECT_FALSE(ColorRange({2}, vmin, vmax).ok());
}

TEST(Legend, GoesWhereThereIsNoInk) {
  // Ink in the upper right quadrant: the legend moves to the upper left.
  Canvas canvas(400, 400);
  const Rect area{0, 0, 400, 400};
  cairo_rectangle(canvas.cr(), 200, 0, 200, 200);
  cairo_fill(canvas.cr());
  Rect box = DrawLegend(canvas, area, {{"a", SeriesColor(0)}});
  EXPECT_LT(box.right(), 200);
  EXPECT_LT(box.bottom(), 200);
  // Upper half inked: lower right.
  Canvas c2(400, 400);
  cairo_rectangle(c2.cr(), 0, 0, 400, 200);
  cairo_fill(c2.cr());
  box = DrawLegend(c2, area, {{"a", SeriesColor(0)}, {"b", SeriesColor(1)}});
  EXPECT_GT(box.x, 200);
  EXPECT_GT(box.y, 200);
  // Empty canvas: upper right; no labelled entry: nothing drawn.
  Canvas c3(400, 400);
  box = DrawLegend(c3, area, {{"a", SeriesColor(0)}});
  EXPECT_GT(box.x, 200);
  EXPECT_LT(box.y, 200);
  EXPECT_EQ(DrawLegend(c3, area, {{"", SeriesColor(0)}}).w, 0);
}

}  // namespace
}  // namespace flowtape::viz
