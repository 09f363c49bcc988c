#include "cli/checks.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

ABSL_FLAG(double, max_memory_gb, 0,
          "memory limit in GiB for the run's estimated footprint "
          "(cli/budget.h); 0 = the memory available (MemAvailable, "
          "cgroup limit)");

namespace flowtape::cli {

absl::Status CheckImageSet(const data::ImageSet& set, const std::string& what,
                           const Shape& image, int classes,
                           int64_t min_images) {
  const Shape& s = set.images.shape();
  if (s.rank() != 4 || s[1] != image[0] || s[2] != image[1] || s[3] != image[2])
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": images are ", s.ToString(), ", expected [N, ",
                     image[0], ", ", image[1], ", ", image[2], "]"));
  const int64_t n = s[0];
  if (n < min_images)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", n, " images, need at least ", min_images));
  if (static_cast<int64_t>(set.labels.size()) != n)
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", set.labels.size(), " labels for ", n, " images"));
  for (int64_t i = 0; i < n; ++i)
    if (set.labels[i] < 0 || set.labels[i] >= classes)
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": label ", set.labels[i], " of image ", i,
                       " outside [0, ", classes, ")"));
  return absl::OkStatus();
}

absl::Status CheckFlags(std::initializer_list<FlagCheck> checks) {
  std::vector<std::string> bad;
  for (const FlagCheck& c : checks)
    if (!c.ok)
      bad.push_back(
          absl::StrCat("--", c.name, "=", c.value, ": must be ", c.rule));
  if (bad.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(bad, "; "));
}

namespace {
std::atomic<int> run_replicas{1};
}  // namespace

void SetRunReplicas(int n) { run_replicas.store(n > 1 ? n : 1); }
int RunReplicas() { return run_replicas.load(); }

absl::Status CheckRunMemory(const Footprint& footprint,
                            const std::string& flags) {
  const double gb = absl::GetFlag(FLAGS_max_memory_gb);
  if (!(gb >= 0) || !std::isfinite(gb))
    return absl::InvalidArgumentError(
        absl::StrCat("--max_memory_gb=", gb,
                     ": must be finite and >= 0 (0: physical "
                     "memory)"));
  Footprint f = footprint;
  f.replicas = std::max<double>(f.replicas, RunReplicas());
  return CheckMemory(f, flags, MemoryLimitBytes(gb));
}

absl::Status CheckStepFinite(const std::string& run, int64_t step, double loss,
                             const std::vector<Tensor>& params) {
  if (!std::isfinite(loss))
    return absl::FailedPreconditionError(
        absl::StrCat(run, ": step ", step, ": non-finite loss (", loss, ")"));
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor g = params[k].grad();
    if (!g.defined()) continue;
    const bool finite = VisitDType(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* d = g.data<T>();
      for (int64_t i = 0; i < g.numel(); ++i)
        if (!std::isfinite(d[i])) return false;
      return true;
    });
    if (!finite)
      return absl::FailedPreconditionError(
          absl::StrCat(run, ": step ", step,
                       ": non-finite gradient of "
                       "parameter ",
                       k, " (loss ", loss, ")"));
  }
  return absl::OkStatus();
}

}  // namespace flowtape::cli
