#include "data/toy2d.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace flowtape::data {
namespace {

using Points = std::vector<std::pair<double, double>>;
constexpr double kPi = 3.14159265358979323846;

// np.linspace(0, end, n, endpoint=False)[i]
double Lin(int64_t i, int64_t n, double end) { return end * i / n; }

void Shuffle(Points& p, Rng& rng) { rng.Shuffle(p); }

Points SwissRoll(int64_t n, Rng& rng) {
  Points p(n);
  for (auto& [x, y] : p) {
    double t = 1.5 * kPi * (1.0 + 2.0 * rng.Uniform());
    x = (t * std::cos(t) + rng.Normal()) / 5.0;
    rng.Normal();  // sklearn's noise on the dropped height axis
    y = (t * std::sin(t) + rng.Normal()) / 5.0;
  }
  return p;
}

Points Circles(int64_t n, Rng& rng) {
  int64_t n_out = n / 2, n_in = n - n_out;
  Points p;
  for (int64_t i = 0; i < n_out; ++i) {
    double a = Lin(i, n_out, 2 * kPi);
    p.emplace_back(std::cos(a), std::sin(a));
  }
  for (int64_t i = 0; i < n_in; ++i) {
    double a = Lin(i, n_in, 2 * kPi);
    p.emplace_back(0.5 * std::cos(a), 0.5 * std::sin(a));
  }
  for (auto& [x, y] : p) {
    x = 3.0 * (x + 0.08 * rng.Normal());
    y = 3.0 * (y + 0.08 * rng.Normal());
  }
  Shuffle(p, rng);
  return p;
}

Points Rings(int64_t n, Rng& rng) {
  int64_t n4 = n / 4, n1 = n - 3 * n4;
  const int64_t counts[4] = {n4, n4, n4, n1};
  const double radii[4] = {1.0, 0.75, 0.5, 0.25};
  Points p;
  for (int r = 0; r < 4; ++r)
    for (int64_t i = 0; i < counts[r]; ++i) {
      double a = Lin(i, counts[r], 2 * kPi);
      p.emplace_back(3.0 * radii[r] * std::cos(a),
                     3.0 * radii[r] * std::sin(a));
    }
  Shuffle(p, rng);
  for (auto& [x, y] : p) {
    x += 0.08 * rng.Normal();
    y += 0.08 * rng.Normal();
  }
  return p;
}

Points Moons(int64_t n, Rng& rng) {
  int64_t n_out = n / 2, n_in = n - n_out;
  Points p;
  // np.linspace(0, pi, m) includes the end point.
  auto lin = [](int64_t i, int64_t m) {
    return m == 1 ? 0.0 : kPi * i / (m - 1);
  };
  for (int64_t i = 0; i < n_out; ++i)
    p.emplace_back(std::cos(lin(i, n_out)), std::sin(lin(i, n_out)));
  for (int64_t i = 0; i < n_in; ++i)
    p.emplace_back(1.0 - std::cos(lin(i, n_in)),
                   1.0 - std::sin(lin(i, n_in)) - 0.5);
  Shuffle(p, rng);
  for (auto& [x, y] : p) {
    x = 2.0 * (x + 0.1 * rng.Normal()) - 1.0;
    y = 2.0 * (y + 0.1 * rng.Normal()) - 0.2;
  }
  return p;
}

Points EightGaussians(int64_t n, Rng& rng) {
  Points p(n);
  for (auto& [x, y] : p) {
    double a = kPi / 4.0 * rng.UniformInt(8);
    x = (0.5 * rng.Normal() + 4.0 * std::cos(a)) / 1.414;
    y = (0.5 * rng.Normal() + 4.0 * std::sin(a)) / 1.414;
  }
  return p;
}

Points Pinwheel(int64_t n, Rng& rng) {
  const int kArms = 5;
  int64_t per_arm = (n + kArms - 1) / kArms;
  Points p;
  for (int arm = 0; arm < kArms; ++arm)
    for (int64_t i = 0; i < per_arm; ++i) {
      double f0 = 0.3 * rng.Normal() + 1.0, f1 = 0.1 * rng.Normal();
      double a = 2 * kPi * arm / kArms + 0.25 * std::exp(f0);
      double c = std::cos(a), s = std::sin(a);
      p.emplace_back(2.0 * (f0 * c + f1 * s), 2.0 * (-f0 * s + f1 * c));
    }
  Shuffle(p, rng);
  return p;
}

Points TwoSpirals(int64_t n, Rng& rng) {
  int64_t half = (n + 1) / 2;
  Points p(2 * half);
  for (int64_t i = 0; i < half; ++i) {
    double t = std::sqrt(rng.Uniform()) * 540.0 * (2 * kPi) / 360.0;
    double x = -std::cos(t) * t + 0.5 * rng.Uniform();
    double y = std::sin(t) * t + 0.5 * rng.Uniform();
    p[i] = {x / 3.0, y / 3.0};
    p[half + i] = {-x / 3.0, -y / 3.0};
  }
  for (auto& [x, y] : p) {
    x += 0.1 * rng.Normal();
    y += 0.1 * rng.Normal();
  }
  Shuffle(p, rng);
  return p;
}

Points Checkerboard(int64_t n, Rng& rng) {
  Points p(n);
  for (auto& [x, y] : p) {
    double x1 = 4.0 * rng.Uniform() - 2.0;
    double x2 = rng.Uniform() - 2.0 * rng.UniformInt(2);
    double parity = std::fmod(std::floor(x1), 2.0);
    if (parity < 0) parity += 2.0;  // Python's % is non-negative
    x = 2.0 * x1;
    y = 2.0 * (x2 + parity);
  }
  return p;
}

}  // namespace

const std::vector<std::string>& Toy2dNames() {
  static const auto* names = new std::vector<std::string>{
      "swissroll",  "circles",  "rings",    "moons",
      "8gaussians", "pinwheel", "2spirals", "checkerboard"};
  return *names;
}

absl::StatusOr<Tensor> SampleToy2d(const std::string& name, int64_t n,
                                   Rng& rng) {
  if (n <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("toy2d: need a positive sample count, got ", n));
  Points p;
  if (name == "swissroll")
    p = SwissRoll(n, rng);
  else if (name == "circles")
    p = Circles(n, rng);
  else if (name == "rings")
    p = Rings(n, rng);
  else if (name == "moons")
    p = Moons(n, rng);
  else if (name == "8gaussians")
    p = EightGaussians(n, rng);
  else if (name == "pinwheel")
    p = Pinwheel(n, rng);
  else if (name == "2spirals")
    p = TwoSpirals(n, rng);
  else if (name == "checkerboard")
    p = Checkerboard(n, rng);
  else
    return absl::InvalidArgumentError(
        absl::StrCat("toy2d: unknown data set '", name, "'; expected one of ",
                     absl::StrJoin(Toy2dNames(), ", ")));
  // pinwheel and 2spirals draw whole arms (rounding n up); the rows are
  // shuffled, so keeping the first n is a uniform subset.
  p.resize(n);
  Tensor t = Tensor::Empty(Shape{n, 2});
  double* d = t.mutable_data<double>();
  for (size_t i = 0; i < p.size(); ++i) {
    d[2 * i] = p[i].first;
    d[2 * i + 1] = p[i].second;
  }
  return t;
}

}  // namespace flowtape::data
