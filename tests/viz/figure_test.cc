// Figures as files: valid PNGs of the requested size (read back with
// ReadPng), pixel for pixel what Render() drew; grid layout; and errors as a
// Status (unwritable paths with the system's reason, panels that cannot be
// drawn), never a crash.
#include "viz/figure.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "viz/heatmap.h"
#include "viz/lines.h"
#include "viz/png.h"
#include "viz/scatter.h"

namespace flowtape::viz {
namespace {

std::string Tmp(const std::string& name) {
  return std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
}

Lines Diagonal(const std::string& title) {
  Lines l;
  l.title = title;
  l.xlabel = "x";
  l.ylabel = "y";
  LineSeries d;
  d.label = "y = x";
  d.x = d.y = {0, 1, 2};
  l.series.push_back(d);
  return l;
}

TEST(Figure, WritesAPngOfTheRequestedSize) {
  FigureOptions o;
  o.width = 640;
  o.height = 300;
  Figure f(o);
  f.Add(Diagonal("one"));
  ASSERT_TRUE(f.Write(Tmp("size.png")).ok());
  Image back = ReadPng(Tmp("size.png")).value();
  EXPECT_EQ(back.width, 640);
  EXPECT_EQ(back.height, 300);
  // The file holds exactly the rendered pixels.
  Rendering r = f.Render().value();
  EXPECT_EQ(back.rgb, r.image.rgb);
}

TEST(Figure, DefaultSizeIsOneCellPerPanelPlusTheTitleBand) {
  FigureOptions o;
  o.cols = 2;
  o.title = "three panels";
  Figure f(o);
  for (const char* t : {"a", "b", "c"}) f.Add(Diagonal(t));
  EXPECT_EQ(f.width(), 2 * kCellWidth);
  EXPECT_EQ(f.height(), 2 * kCellHeight + kTitleBand);
  Rendering r = f.Render().value();
  EXPECT_EQ(r.image.width, 2 * kCellWidth);
  EXPECT_EQ(r.image.height, 2 * kCellHeight + kTitleBand);
  ASSERT_EQ(r.axes.size(), 3u);
  // Row-major cells: panel 1 right of panel 0, panel 2 below panel 0.
  EXPECT_GT(r.axes[1].area.x, kCellWidth);
  EXPECT_LT(r.axes[2].area.x, kCellWidth);
  EXPECT_GT(r.axes[2].area.y, kTitleBand + kCellHeight);
  EXPECT_GT(r.axes[0].area.y, kTitleBand);
  // cols = 0: one row.
  Figure row;
  for (const char* t : {"a", "b", "c"}) row.Add(Diagonal(t));
  EXPECT_EQ(row.width(), 3 * kCellWidth);
  EXPECT_EQ(row.height(), kCellHeight);
}

TEST(Figure, UnwritablePathsAreAStatusNamingPathAndReason) {
  Figure f;
  f.Add(Diagonal("d"));
  absl::Status s = f.Write("/nonexistent_dir/figure.png");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "/nonexistent_dir/figure.png"))
      << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "No such file or directory")) << s;
  // A directory.
  s = f.Write(std::getenv("TEST_TMPDIR"));
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "Is a directory")) << s;
  // A read-only directory (root may write anyway).
  const std::string ro = Tmp("readonly");
  ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
  if (geteuid() != 0) {
    s = f.Write(ro + "/f.png");
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  }
  // Writes that fail after the file opened: a full device.
  if (access("/dev/full", W_OK) == 0) {
    s = f.Write("/dev/full");
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "No space left on device")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "/dev/full")) << s;
  }
}

TEST(Figure, BadTextAndFarPointsStillDraw) {
  // Invalid UTF-8 in a title (cairo would stop drawing) and a point 1e12
  // axis lengths away (beyond cairo's fixed-point range).
  Lines l = Diagonal("bad \xff\xfe title");
  l.series[0].x = {0, 1, 1};
  l.series[0].y = {0, 1, 1e12};
  l.series[0].width = 3;
  l.box = Box{0, 2, 0, 2};
  FigureOptions o;
  o.title = "figure \xc3";
  Figure f(o);
  f.Add(l);
  absl::StatusOr<Rendering> r = f.Render();
  ASSERT_TRUE(r.ok()) << r.status();
  // The diagonal through (0.5, 0.5), then straight up from (1, 1).
  const Axes& a = r->axes[0];
  for (double y : {0.5, 1.5, 1.9}) {
    const double x = std::min(y, 1.0);
    const Rgb c = r->image.at(static_cast<int>(a.PixelX(x)),
                              static_cast<int>(a.PixelY(y)));
    EXPECT_LT(c.r, 150) << "at y = " << y;
  }
}

TEST(Figure, NegativeSizesAreInvalidArgument) {
  EXPECT_TRUE(FigureOptions{}.Validate().ok());
  FigureOptions negative_cols, negative_width, negative_height;
  negative_cols.cols = -1;
  negative_width.width = -5;
  negative_height.height = -2;
  for (const FigureOptions& o :
       {negative_cols, negative_width, negative_height}) {
    Figure f(o);
    f.Add(Diagonal("fine"));
    absl::StatusOr<Rendering> r = f.Render();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(r.status().message(), "must be >= 0"))
        << r.status();
  }
}

TEST(Figure, PanelErrorsNameThePanel) {
  Figure f;
  f.Add(Diagonal("fine"));
  Lines bad = Diagonal("log of negatives");
  bad.series[0].y = {-1, 1, 2};
  bad.log_y = true;
  f.Add(bad);
  absl::Status s = f.Write(Tmp("bad.png"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "panel 1 (log of negatives)"))
      << s;
  // Nothing written.
  struct stat st;
  EXPECT_NE(stat(Tmp("bad.png").c_str(), &st), 0);
  // Empty figure; cells too small to plot in; too many pixels.
  EXPECT_EQ(Figure().Render().status().code(),
            absl::StatusCode::kInvalidArgument);
  FigureOptions tiny;
  tiny.width = 50;
  tiny.height = 40;
  Figure t(tiny);
  t.Add(Diagonal("t"));
  EXPECT_EQ(t.Render().status().code(), absl::StatusCode::kInvalidArgument);
  FigureOptions huge;
  huge.width = 100000;
  huge.height = 100000;
  Figure h(huge);
  h.Add(Diagonal("h"));
  EXPECT_EQ(h.Write(Tmp("huge.png")).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::viz
