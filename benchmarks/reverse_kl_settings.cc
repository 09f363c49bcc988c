#include "benchmarks/reverse_kl_settings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "cli/budget.h"
#include "cli/checks.h"

namespace flowtape::benchmarks {

absl::Status ReadReverseKlSettings(ReverseKlSettings& s, int default_steps) {
  if (s.seeds == 0) s.seeds = s.full ? 5 : 3;
  if (s.steps == 0) s.steps = s.full ? 20000 : default_steps;
  return cli::CheckFlags({
      {"seeds", s.seeds, s.seeds > 0 && s.seeds <= 100, "in [1, 100]"},
      {"steps", s.steps, s.steps > 0 && s.steps <= 10000000, "in [1, 1e7]"},
      {"layers", s.layers, s.layers >= 1 && s.layers <= 64, "in [1, 64]"},
      {"bins", s.bins, s.bins >= 2 && s.bins <= 256, "in [2, 256]"},
      {"components", s.components, s.components >= 1 && s.components <= 256,
       "in [1, 256]"},
      {"hidden", s.hidden, s.hidden >= 1 && s.hidden <= 4096, "in [1, 4096]"},
      {"batch", s.batch, s.batch >= 1 && s.batch <= 1000000, "in [1, 1e6]"},
      {"eval_samples", s.eval_samples,
       s.eval_samples >= 2 && s.eval_samples <= 10000000, "in [2, 1e7]"},
      {"lr", s.lr, std::isfinite(s.lr) && s.lr > 0 && s.lr < 1, "in (0, 1)"},
  });
}

absl::Status CheckReverseKlMemory(const ReverseKlSettings& s, double per_bin,
                                  int min_batch) {
  // Per sample and layer: the conditioners of width hidden and the map's
  // parameters, a few times over on the tape.
  cli::Footprint f;
  const double width =
      2.0 * s.hidden + per_bin * s.bins + 3.0 * s.components + 4.0;
  f.parameters = 2.0 * s.layers * (s.hidden * (s.hidden + 4.0) + width * 64);
  f.activations_per_example = 20.0 * s.layers * width;
  f.batch = std::max(s.batch, min_batch);
  return cli::CheckRunMemory(
      f, absl::StrCat("--layers=", s.layers, " --hidden=", s.hidden,
                      " --batch=", s.batch));
}

std::string MeanSd(const std::vector<double>& v, const char* fmt) {
  double m = 0, var = 0;
  for (double x : v) m += x / v.size();
  for (double x : v) var += (x - m) * (x - m);
  const double sd = v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0.0;
  char buf[128];
  std::snprintf(buf, sizeof buf, fmt, m, sd);
  return buf;
}

}  // namespace flowtape::benchmarks
