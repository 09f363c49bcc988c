#include "training/importance.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::training {

absl::StatusOr<ImportanceEstimate> ImportanceFromLogWeights(
    const std::vector<double>& log_w) {
  const int64_t n = static_cast<int64_t>(log_w.size());
  if (n == 0) return absl::InvalidArgumentError("importance: no log weights");
  double m = -INFINITY, neg_sum = 0;
  int64_t zero = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double l = log_w[i];
    if (std::isnan(l) || l == INFINITY)
      return absl::InvalidArgumentError(
          absl::StrCat("importance: log weight ", i, " of ", n, " is ", l));
    m = std::max(m, l);
    if (l == -INFINITY) ++zero;
    neg_sum -= l;
  }
  if (m == -INFINITY)
    return absl::InvalidArgumentError(
        absl::StrCat("importance: all ", n, " weights are zero"));
  // Weights scaled by exp(-m): s1 = sum w, s2 = sum w^2.
  double s1 = 0, s2 = 0;
  for (double l : log_w) {
    const double w = std::exp(l - m);
    s1 += w;
    s2 += w * w;
  }
  ImportanceEstimate e;
  e.n = n;
  e.log_z = m + std::log(s1 / n);
  const double mean = s1 / n, var = std::max(0.0, s2 / n - mean * mean);
  e.log_z_stderr = n > 1 ? std::sqrt(var * n / (n - 1) / n) / mean : INFINITY;
  e.free_energy = zero > 0 ? INFINITY : neg_sum / n;
  e.ess = s1 * s1 / s2;
  e.ess_fraction = e.ess / n;
  return e;
}

absl::StatusOr<ImportanceEstimate> EstimateLogNormalizer(
    const flows::FlowModel& model, const LogDensityFn& log_p, int64_t n,
    Rng& rng, int64_t batch) {
  if (n <= 0 || batch <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "importance: n and batch must be positive, got ", n, " and ", batch));
  NoGradScope no_grad;
  std::vector<double> log_w;
  log_w.reserve(n);
  for (int64_t done = 0; done < n; done += batch) {
    TapeScope scope;
    auto s = model.SampleWithLogProb(std::min(batch, n - done), rng);
    const std::vector<double> l =
        (Cast(log_p(s.x), kFloat64) - Cast(s.log_prob, kFloat64)).ToVector();
    log_w.insert(log_w.end(), l.begin(), l.end());
  }
  return ImportanceFromLogWeights(log_w);
}

}  // namespace flowtape::training
