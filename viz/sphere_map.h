// Sphere map: points and densities on the unit sphere S^2 in the
// equirectangular (plate carree) projection: longitude -180..180 degrees to
// the right, latitude -90..90 upwards, a lat/lon grid every grid_degrees, and
// coastlines when a shapefile is given (by default Natural Earth's, which
// Debian's libplplot-data ships as /usr/share/plplot<version>/globe.shp).
//
//   Unit vector <-> degrees: x = cos(lat) cos(lon), y = cos(lat) sin(lon),
//   z = sin(lat) (data::ToUnitVector).
//   values[row * nlon + col]: the value at the cell centre
//     lon = -180 + (col + 0.5) 360 / nlon, lat = 90 - (row + 0.5) 180 / nlat
//   (row 0 at the north), drawn through viridis with a colour bar over
//   [vmin, vmax] (NaN: the finite min / max); no values: a plain map.
//   points: [N, 3] unit vectors (normalised before projecting; rows with a
//   non-finite or zero vector are skipped), dots in the series' colour (red,
//   then tab10 from green on), labelled series in a legend.
//
// SphereDensityMap evaluates a density on the sphere: log_prob maps [M, 3]
// unit vectors to [M] log densities (one call per latitude row, without
// recording); the map shows log p over the log_range nats below its maximum
// (colour bar "log p(x)"), or p itself without log_scale ("p(x)").
//
// Errors: InvalidArgument for values.size() != nlon * nlat, points that are
// not [N, 3], a coastline file that is not a line or polygon shapefile, or a
// cell too small to plot in; NotFound for a coastline file that cannot be
// opened. An empty `coastlines` draws no coastlines. SphereDensityMap:
// InvalidArgument for options that fail Validate() or a log_prob that does
// not return one value per point.
#ifndef FLOWTAPE_VIZ_SPHERE_MAP_H_
#define FLOWTAPE_VIZ_SPHERE_MAP_H_

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "viz/axes.h"
#include "viz/canvas.h"
#include "viz/colormap.h"

namespace flowtape::viz {

// The first /usr/share/plplot*/globe.shp, or "" when libplplot-data is not
// installed.
std::string DefaultCoastlines();

struct SpherePoints {
  std::string label{};  // empty: not in the legend
  Tensor points{};
  std::optional<Color> color{};
  double radius = 1.6;
  double alpha = 0.7;
};

struct SphereMap {
  std::string title{};
  int nlon = 0, nlat = 0;
  std::vector<double> values{};
  std::string colorbar_label{};
  double vmin = NAN, vmax = NAN;
  std::vector<SpherePoints> points{};
  std::string coastlines = DefaultCoastlines();
  double grid_degrees = 30;
};

struct SphereDensityOptions {
  int nlon = 360, nlat = 180;
  bool log_scale = true;
  double log_range = 10.0;  // nats shown below the maximum (log_scale)
  // InvalidArgument unless nlon and nlat are in [1, 8192] and log_range is
  // finite and > 0.
  absl::Status Validate() const;
};

absl::StatusOr<SphereMap> SphereDensityMap(
    const std::function<Tensor(const Tensor&)>& log_prob,
    const SphereDensityOptions& options = {});

// Longitude and latitude in degrees of a vector (need not be unit length).
void ToLonLat(const double* xyz, double* lon, double* lat);

absl::StatusOr<Axes> Draw(Canvas& canvas, const Rect& cell, const SphereMap& p);

}  // namespace flowtape::viz

#endif  // FLOWTAPE_VIZ_SPHERE_MAP_H_
