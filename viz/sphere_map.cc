#include "viz/sphere_map.h"

#include <glob.h>
#include <shapefil.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "viz/colorbar.h"
#include "viz/legend.h"

namespace flowtape::viz {
namespace {

const Color kOcean{0.93, 0.95, 0.98};

using Polyline = std::vector<std::pair<double, double>>;  // (lon, lat)

absl::StatusOr<std::vector<Polyline>> ReadShapeLines(const std::string& path) {
  SHPHandle shp = SHPOpen(path.c_str(), "rb");
  if (shp == nullptr)
    return absl::NotFoundError(
        absl::StrCat("coastlines: cannot open shapefile ", path));
  int count = 0, type = 0;
  SHPGetInfo(shp, &count, &type, nullptr, nullptr);
  if (type != SHPT_ARC && type != SHPT_POLYGON) {
    SHPClose(shp);
    return absl::InvalidArgumentError(
        absl::StrCat("coastlines: ", path, " holds shapes of type ", type,
                     " (want lines or polygons)"));
  }
  std::vector<Polyline> lines;
  for (int i = 0; i < count; ++i) {
    SHPObject* o = SHPReadObject(shp, i);
    if (o == nullptr) continue;
    for (int part = 0; part < o->nParts; ++part) {
      const int begin = o->panPartStart[part];
      const int end =
          part + 1 < o->nParts ? o->panPartStart[part + 1] : o->nVertices;
      Polyline line;
      for (int k = std::max(begin, 0); k < std::min(end, o->nVertices); ++k)
        line.emplace_back(o->padfX[k], o->padfY[k]);
      if (line.size() >= 2) lines.push_back(std::move(line));
    }
    SHPDestroyObject(o);
  }
  SHPClose(shp);
  return lines;
}

std::string Degrees(double v, const char* positive, const char* negative) {
  const long d = std::lround(std::abs(v));
  if (d == 0 || d == 180) return absl::StrCat(d, "\u00b0");
  return absl::StrCat(d, "\u00b0", v > 0 ? positive : negative);
}

}  // namespace

std::string DefaultCoastlines() {
  glob_t g;
  std::string path;
  if (glob("/usr/share/plplot*/globe.shp", 0, nullptr, &g) == 0 &&
      g.gl_pathc > 0)
    path = g.gl_pathv[0];
  globfree(&g);
  return path;
}

void ToLonLat(const double* xyz, double* lon, double* lat) {
  const double r =
      std::sqrt(xyz[0] * xyz[0] + xyz[1] * xyz[1] + xyz[2] * xyz[2]);
  *lat = std::asin(std::clamp(xyz[2] / r, -1.0, 1.0)) * 180.0 / M_PI;
  *lon = std::atan2(xyz[1], xyz[0]) * 180.0 / M_PI;
}

absl::Status SphereDensityOptions::Validate() const {
  if (nlon < 1 || nlat < 1 || nlon > 8192 || nlat > 8192)
    return absl::InvalidArgumentError(
        absl::StrCat("sphere_density_map: grid nlon = ", nlon,
                     ", nlat = ", nlat, " must be in [1, 8192]"));
  if (!std::isfinite(log_range) || !(log_range > 0))
    return absl::InvalidArgumentError(
        absl::StrCat("sphere_density_map: log_range = ", log_range,
                     " must be finite and > 0"));
  return absl::OkStatus();
}

absl::StatusOr<SphereMap> SphereDensityMap(
    const std::function<Tensor(const Tensor&)>& log_prob,
    const SphereDensityOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  const int w = options.nlon, h = options.nlat;
  SphereMap map;
  map.title = "model density";
  map.nlon = w;
  map.nlat = h;
  map.values.resize(static_cast<size_t>(w) * h);
  for (int row = 0; row < h; ++row) {
    NoGradScope no_grad;
    TapeScope scope;
    const double lat = (90.0 - (row + 0.5) * 180.0 / h) * M_PI / 180.0;
    Tensor pts = Tensor::Zeros(Shape{w, 3});
    double* p = pts.mutable_data<double>();
    for (int col = 0; col < w; ++col) {
      const double lon = (-180.0 + (col + 0.5) * 360.0 / w) * M_PI / 180.0;
      p[3 * col] = std::cos(lat) * std::cos(lon);
      p[3 * col + 1] = std::cos(lat) * std::sin(lon);
      p[3 * col + 2] = std::sin(lat);
    }
    Tensor lp = log_prob(pts);
    if (lp.numel() != w)
      return absl::InvalidArgumentError(
          absl::StrCat("sphere_density_map: log_prob returned ",
                       lp.shape().ToString(), " for ", w, " points"));
    const std::vector<double> v = lp.ToVector();
    std::copy_n(v.begin(), w,
                map.values.begin() + static_cast<size_t>(row) * w);
  }
  if (options.log_scale) {
    double top = -INFINITY;
    for (double v : map.values)
      if (std::isfinite(v)) top = std::max(top, v);
    if (std::isfinite(top)) {
      map.vmax = top;
      map.vmin = top - options.log_range;
    }
    map.colorbar_label = "log p(x)";
  } else {
    for (double& v : map.values) v = std::exp(v);
    map.vmin = 0.0;
    map.colorbar_label = "p(x)";
  }
  return map;
}

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell,
                          const SphereMap& p) {
  const bool density = !p.values.empty();
  if (density && (p.nlon <= 0 || p.nlat <= 0 ||
                  p.values.size() != static_cast<size_t>(p.nlon) * p.nlat))
    return absl::InvalidArgumentError(
        absl::StrCat("sphere map: ", p.values.size(), " values for a ", p.nlon,
                     "x", p.nlat, " grid"));
  for (size_t s = 0; s < p.points.size(); ++s) {
    const Tensor& t = p.points[s].points;
    if (!t.defined() || t.rank() != 2 || t.dim(1) != 3)
      return absl::InvalidArgumentError(absl::StrCat(
          "sphere map: series ", s, " points ",
          t.defined() ? t.shape().ToString() : "undefined", " (want [N, 3])"));
  }
  std::vector<Polyline> coast;
  if (!p.coastlines.empty()) {
    FT_ASSIGN_OR_RETURN(coast, ReadShapeLines(p.coastlines));
  }
  double vmin = p.vmin, vmax = p.vmax;
  if (density) FT_RETURN_IF_ERROR(ColorRange(p.values, vmin, vmax));
  Axis x = MakeAxis(-180, 180, "longitude"), y = MakeAxis(-90, 90, "latitude");
  for (double v = -180; v <= 180; v += 60) x.ticks.push_back(v);
  for (double v = -90; v <= 90; v += 30) y.ticks.push_back(v);
  x.format = [](double v) { return Degrees(v, "E", "W"); };
  y.format = [](double v) { return Degrees(v, "N", "S"); };
  FT_ASSIGN_OR_RETURN(
      const Axes axes,
      LayoutAxes(
          canvas, cell, p.title, x, y,
          density ? ColorbarWidth(canvas, vmin, vmax, p.colorbar_label) : 0.0,
          /*aspect=*/0.5));
  const Rect& a = axes.area;
  cairo_t* cr = canvas.cr();
  if (density) {
    canvas.DrawImage(Colorize(p.nlon, p.nlat, p.values, vmin, vmax), a,
                     /*smooth=*/true);
  } else {
    cairo_rectangle(cr, a.x, a.y, a.w, a.h);
    canvas.SetColor(kOcean);
    cairo_fill(cr);
  }
  cairo_save(cr);
  cairo_rectangle(cr, a.x, a.y, a.w, a.h);
  cairo_clip(cr);
  // Lat/lon grid.
  const Color line = density ? Color{1, 1, 1} : Color{0.55, 0.6, 0.7};
  canvas.SetColor(line, density ? 0.3 : 0.5);
  cairo_set_line_width(cr, 0.8);
  if (p.grid_degrees > 0) {
    for (double lon = -180 + p.grid_degrees; lon < 180; lon += p.grid_degrees) {
      cairo_move_to(cr, axes.PixelX(lon), a.y);
      cairo_line_to(cr, axes.PixelX(lon), a.bottom());
    }
    for (double lat = -90 + p.grid_degrees; lat < 90; lat += p.grid_degrees) {
      cairo_move_to(cr, a.x, axes.PixelY(lat));
      cairo_line_to(cr, a.right(), axes.PixelY(lat));
    }
    cairo_stroke(cr);
  }
  // Coastlines; a jump of more than half the globe is a wrap, not a line.
  canvas.SetColor(density ? Color{1, 1, 1} : Color{0.25, 0.25, 0.25},
                  density ? 0.75 : 1.0);
  cairo_set_line_width(cr, 0.8);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (const Polyline& l : coast) {
    cairo_move_to(cr, axes.PixelX(l[0].first), axes.PixelY(l[0].second));
    for (size_t k = 1; k < l.size(); ++k) {
      const double px = axes.PixelX(l[k].first), py = axes.PixelY(l[k].second);
      if (std::abs(l[k].first - l[k - 1].first) > 180)
        cairo_move_to(cr, px, py);
      else
        cairo_line_to(cr, px, py);
    }
    cairo_stroke(cr);
  }
  std::vector<LegendEntry> legend;
  for (size_t s = 0; s < p.points.size(); ++s) {
    const SpherePoints& series = p.points[s];
    const Color color = series.color.value_or(SeriesColor(s == 0 ? 3 : s + 1));
    canvas.SetColor(color, series.alpha);
    const double* d = series.points.data<double>();
    for (int64_t i = 0; i < series.points.dim(0); ++i) {
      double lon, lat;
      ToLonLat(d + 3 * i, &lon, &lat);
      if (!std::isfinite(lon) || !std::isfinite(lat)) continue;
      cairo_arc(cr, axes.PixelX(lon), axes.PixelY(lat), series.radius, 0,
                2 * M_PI);
      cairo_fill(cr);
    }
    legend.push_back({series.label, color, LegendMark::kDot});
  }
  cairo_restore(cr);
  DrawAxes(canvas, axes, p.title);
  if (density) DrawColorbar(canvas, a, vmin, vmax, p.colorbar_label);
  DrawLegend(canvas, a, legend, density ? Color{1, 1, 1} : kOcean);
  return axes;
}

}  // namespace flowtape::viz
