#include "cli/budget.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "data/number.h"

namespace flowtape::cli {

double Footprint::Bytes() const {
  const double copies = replicas > 1 ? replicas : 1;
  return 8.0 * (4.0 * parameters * copies +
                3.0 * activations_per_example * batch + data_values);
}

double MlpParameters(double in, const std::vector<int64_t>& hidden,
                     double out) {
  double total = 0, prev = in;
  for (int64_t h : hidden) {
    total += (prev + 1.0) * static_cast<double>(h);
    prev = static_cast<double>(h);
  }
  return total + (prev + 1.0) * out;
}

double MlpActivations(double in, const std::vector<int64_t>& hidden,
                      double out) {
  double total = in + out;
  for (int64_t h : hidden) total += 2.0 * static_cast<double>(h);
  return total;
}

Footprint FlowFootprint(double layers, double dim, double context,
                        const std::vector<int64_t>& hidden, double batch,
                        double data_values) {
  Footprint f;
  f.parameters = layers * MlpParameters(dim + context, hidden, 2.0 * dim);
  f.activations_per_example =
      layers * (MlpActivations(dim + context, hidden, 2.0 * dim) + 4.0 * dim);
  f.batch = batch;
  f.data_values = data_values;
  return f;
}

Footprint ConvFlowFootprint(double steps, double channels, double pixels,
                            double hidden, double batch, double data_values) {
  Footprint f;
  f.parameters = steps * (9.0 * channels * hidden + hidden * hidden +
                          9.0 * hidden * 2.0 * channels + 4.0 * hidden);
  f.activations_per_example = steps * (3.0 * hidden + 6.0 * channels) * pixels;
  f.batch = batch;
  f.data_values = data_values;
  return f;
}

Footprint ImageFlowFootprint(const std::string& flow, int layers, int levels,
                             int depth, int64_t channels,
                             const std::vector<int64_t>& hidden,
                             int64_t context, int64_t c, int64_t h, int64_t w,
                             double batch) {
  const double pixels = static_cast<double>(h) * static_cast<double>(w);
  const double ch = static_cast<double>(channels);
  if (flow == "glow")
    return ConvFlowFootprint(static_cast<double>(levels) * depth, 4.0 * c,
                             pixels / 4.0, ch, batch, 0);
  if (flow == "realnvp")
    return ConvFlowFootprint(layers, c, pixels, ch, batch, 0);
  return FlowFootprint(layers, static_cast<double>(c) * pixels,
                       static_cast<double>(context), hidden, batch, 0);
}

namespace {

std::string FileText(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  if (in) text << in.rdbuf();
  return text.str();
}

// A byte count alone on its first line (cgroup files), else -1.
double ByteCount(const std::string& text) {
  uint64_t v = 0;
  const std::string line = text.substr(0, text.find('\n'));
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &v)
             ? static_cast<double>(v)
             : -1;
}

}  // namespace

double MemoryLimitFrom(const std::string& meminfo,
                       const std::string& cgroup2_max,
                       const std::string& cgroup1_limit,
                       double physical_bytes) {
  double limit = -1;
  auto take = [&](double bytes) {
    if (bytes >= 0 && (limit < 0 || bytes < limit)) limit = bytes;
  };
  for (absl::string_view line : absl::StrSplit(meminfo, '\n')) {
    if (!absl::ConsumePrefix(&line, "MemAvailable:")) continue;
    line = absl::StripAsciiWhitespace(line);
    uint64_t kb = 0;
    if (absl::ConsumeSuffix(&line, "kB") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb))
      take(1024.0 * static_cast<double>(kb));
  }
  take(ByteCount(cgroup2_max));  // "max": no limit, not a number
  take(ByteCount(cgroup1_limit));
  return limit >= 0 ? limit : physical_bytes;
}

double MemoryLimitBytes(double max_memory_gb) {
  if (max_memory_gb > 0) return max_memory_gb * std::pow(2.0, 30);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  const double physical =
      pages > 0 && page > 0
          ? static_cast<double>(pages) * static_cast<double>(page)
          : 8.0 * std::pow(2.0, 30);  // unknown
  return MemoryLimitFrom(
      FileText("/proc/meminfo"), FileText("/sys/fs/cgroup/memory.max"),
      FileText("/sys/fs/cgroup/memory/memory.limit_in_bytes"), physical);
}

namespace {
std::string Gib(double bytes) {
  if (!std::isfinite(bytes)) return "inf";
  const double g = bytes / std::pow(2.0, 30);
  return g < 1e6 ? absl::StrFormat("%.3g", g) : absl::StrFormat("%.3e", g);
}
}  // namespace

absl::Status CheckMemory(const Footprint& f, const std::string& flags,
                         double limit_bytes) {
  const double bytes = f.Bytes();
  if (bytes <= limit_bytes) return absl::OkStatus();  // false for NaN
  return absl::InvalidArgumentError(absl::StrCat(
      flags, ": the run needs about ", Gib(bytes), " GiB (",
      absl::StrFormat("%.3g", f.parameters), " parameters",
      f.replicas > 1 ? absl::StrFormat(" x %.3g replicas", f.replicas) : "",
      ", ", absl::StrFormat("%.3g", f.activations_per_example),
      " activations per example x batch ", absl::StrFormat("%.3g", f.batch),
      ", ", absl::StrFormat("%.3g", f.data_values),
      " data values; cli/budget.h), above the memory limit of ",
      Gib(limit_bytes),
      " GiB (--max_memory_gb; default: the memory available)"));
}

absl::StatusOr<std::vector<int64_t>> ParseSizeList(const std::string& flag,
                                                   const std::string& text) {
  std::vector<int64_t> sizes;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    bool digits = !item.empty() && item.size() <= 18;
    for (char c : item) digits = digits && c >= '0' && c <= '9';
    int64_t v = 0;
    if (!digits || !absl::SimpleAtoi(item, &v) || v <= 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": bad size '", absl::CHexEscape(item.substr(0, 40)),
          "' (a comma-separated list of positive integers)"));
    sizes.push_back(v);
  }
  return sizes;
}

absl::StatusOr<std::vector<int64_t>> ParseIntegerList(const std::string& flag,
                                                      const std::string& text,
                                                      int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    bool digits = !item.empty() && item.size() <= 18;
    for (char c : item) digits = digits && c >= '0' && c <= '9';
    int64_t v = 0;
    if (!digits || !absl::SimpleAtoi(item, &v) || v < lo || v > hi)
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": bad item '", absl::CHexEscape(item.substr(0, 40)),
          "' (a comma-separated list of integers in [", lo, ", ", hi, "])"));
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<double>> ParseDecimalList(
    const std::string& flag, const std::string& text, const std::string& range,
    const std::function<bool(double)>& pred) {
  std::vector<double> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!data::ParseDecimal(item, &v).ok() || !pred(v))
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": bad item '", absl::CHexEscape(item.substr(0, 40)),
          "' (a comma-separated list of decimals ", range, ")"));
    out.push_back(v);
  }
  return out;
}

}  // namespace flowtape::cli
