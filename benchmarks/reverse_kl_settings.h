// The settings the reverse-KL benchmarks on manifold targets share
// (torus.cc on T^2, sphere_target.cc on S^2): how many seeds and steps, the
// flow's size (layers, spline bins K, Moebius components M, conditioner
// width), the batch, Adam's rate and the samples behind KL and ESS.
//
// ReadReverseKlSettings(s, default_steps) fills the zero seeds/steps with
// the mode's defaults (3 seeds and default_steps; --full: 5 and 20000) and
// checks every field's range: InvalidArgument naming the flag, never an
// abort. CheckReverseKlMemory refuses a size whose tape would not fit
// (cli/budget.h), with `per_bin` values per spline bin and layer
// and at least `min_batch` rows evaluated at once.
// MeanSd(v, fmt) formats mean and sample standard deviation (0 for one
// value) with a two-argument printf format.
#ifndef FLOWTAPE_BENCHMARKS_REVERSE_KL_SETTINGS_H_
#define FLOWTAPE_BENCHMARKS_REVERSE_KL_SETTINGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace flowtape::benchmarks {

struct ReverseKlSettings {
  bool full = false;
  int seeds = 0, steps = 0;
  int layers = 1, bins = 16, components = 8, hidden = 64;
  int batch = 256, eval_samples = 100000;
  double lr = 1e-3;
};

absl::Status ReadReverseKlSettings(ReverseKlSettings& s, int default_steps);
absl::Status CheckReverseKlMemory(const ReverseKlSettings& s, double per_bin,
                                  int min_batch);
std::string MeanSd(const std::vector<double>& v, const char* fmt);

}  // namespace flowtape::benchmarks

#endif  // FLOWTAPE_BENCHMARKS_REVERSE_KL_SETTINGS_H_
