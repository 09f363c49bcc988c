#include "compression/frequencies.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "compression/deterministic_math.h"
#include "compression/rans.h"

namespace flowtape::compression {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

absl::Status CheckPrecision(int precision_bits) {
  if (precision_bits < 1 || precision_bits > kRansMaxPrecisionBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequencies: precision_bits ", precision_bits,
                     " outside 1..", kRansMaxPrecisionBits));
  }
  return absl::OkStatus();
}

struct Entry {
  double key;
  int symbol;
  uint32_t version;
};
// Heap orders (std::push_heap keeps the "largest" on top). Gains: largest
// key first; losses: smallest key first; ties: smaller symbol first, then
// newer version (stale entries are discarded when they surface).
struct GainBelow {
  bool operator()(const Entry& a, const Entry& b) const {
    if (a.key != b.key) return a.key < b.key;
    if (a.symbol != b.symbol) return a.symbol > b.symbol;
    return a.version < b.version;
  }
};
struct LossBelow {
  bool operator()(const Entry& a, const Entry& b) const {
    if (a.key != b.key) return a.key > b.key;
    if (a.symbol != b.symbol) return a.symbol > b.symbol;
    return a.version < b.version;
  }
};

// The core: masses q (validated: finite, >= 0, total > 0), coded[s] says
// whether symbol s gets f_s >= 1.
std::vector<uint32_t> Quantize(absl::Span<const double> q,
                               const std::vector<char>& coded, double total,
                               int precision_bits) {
  const int k = static_cast<int>(q.size());
  const int64_t m = int64_t{1} << precision_bits;
  const double md = static_cast<double>(m);
  std::vector<int64_t> f(k, 0);
  int64_t sum = 0;
  for (int s = 0; s < k; ++s) {
    if (!coded[s]) continue;
    const double target = (q[s] / total) * md;
    f[s] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(target + 0.5)));
    sum += f[s];
  }
  // Change in sum_s q_s log f_s from f_s = units -> units + 1.
  auto unit = [&](int s, int64_t units) {
    return q[s] * DetLog1p(1.0 / static_cast<double>(units));
  };
  std::vector<Entry> gains, losses;
  gains.reserve(2 * k);
  losses.reserve(2 * k);

  // Phase 1: reach sum f = M by the cheapest unit moves.
  if (sum < m) {
    for (int s = 0; s < k; ++s) {
      if (coded[s]) gains.push_back({unit(s, f[s]), s, 0});
    }
    std::make_heap(gains.begin(), gains.end(), GainBelow());
    for (; sum < m; ++sum) {
      std::pop_heap(gains.begin(), gains.end(), GainBelow());
      const int s = gains.back().symbol;
      ++f[s];
      gains.back() = {unit(s, f[s]), s, 0};
      std::push_heap(gains.begin(), gains.end(), GainBelow());
    }
  } else if (sum > m) {
    for (int s = 0; s < k; ++s) {
      if (f[s] >= 2) losses.push_back({unit(s, f[s] - 1), s, 0});
    }
    std::make_heap(losses.begin(), losses.end(), LossBelow());
    // sum - m <= sum_s (f_s - 1): the coded symbols number at most m.
    for (; sum > m; --sum) {
      std::pop_heap(losses.begin(), losses.end(), LossBelow());
      const int s = losses.back().symbol;
      --f[s];
      if (f[s] >= 2) {
        losses.back() = {unit(s, f[s] - 1), s, 0};
        std::push_heap(losses.begin(), losses.end(), LossBelow());
      } else {
        losses.pop_back();
      }
    }
  }

  // Phase 2: exchange units while the best gain beats the smallest loss.
  gains.clear();
  losses.clear();
  std::vector<uint32_t> version(k, 0);
  for (int s = 0; s < k; ++s) {
    if (!coded[s]) continue;
    gains.push_back({unit(s, f[s]), s, 0});
    if (f[s] >= 2) losses.push_back({unit(s, f[s] - 1), s, 0});
  }
  std::make_heap(gains.begin(), gains.end(), GainBelow());
  std::make_heap(losses.begin(), losses.end(), LossBelow());
  auto drop_stale = [&](std::vector<Entry>& heap, auto below) {
    while (!heap.empty() &&
           heap.front().version != version[heap.front().symbol]) {
      std::pop_heap(heap.begin(), heap.end(), below);
      heap.pop_back();
    }
  };
  const int max_moves = 4 * k + 64;
  for (int move = 0; move < max_moves; ++move) {
    drop_stale(gains, GainBelow());
    drop_stale(losses, LossBelow());
    if (gains.empty() || losses.empty()) break;
    const Entry best = gains.front(), cheapest = losses.front();
    // Same symbol on both tops: no exchange between two others can beat it
    // (gains fall as f grows), so the table is optimal.
    if (best.symbol == cheapest.symbol || !(best.key > cheapest.key)) break;
    const int j = best.symbol, i = cheapest.symbol;
    ++f[j];
    --f[i];
    for (int s : {i, j}) {
      ++version[s];
      gains.push_back({unit(s, f[s]), s, version[s]});
      std::push_heap(gains.begin(), gains.end(), GainBelow());
      if (f[s] >= 2) {
        losses.push_back({unit(s, f[s] - 1), s, version[s]});
        std::push_heap(losses.begin(), losses.end(), LossBelow());
      }
    }
  }
  return std::vector<uint32_t>(f.begin(), f.end());
}

absl::Status ValidateMasses(absl::Span<const double> q, double* total) {
  if (q.empty()) {
    return absl::InvalidArgumentError("frequencies: no symbols (K = 0)");
  }
  if (q.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("frequencies: too many symbols");
  }
  double sum = 0.0;
  for (size_t s = 0; s < q.size(); ++s) {
    if (!std::isfinite(q[s]) || q[s] < 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("frequencies: mass[", s, "] = ", q[s],
                       " is not a finite non-negative number"));
    }
    sum += q[s];
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequencies: total mass is ", sum));
  }
  *total = sum;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> QuantizeChecked(
    absl::Span<const double> q, int precision_bits, bool code_all) {
  if (absl::Status s = CheckPrecision(precision_bits); !s.ok()) return s;
  double total = 0.0;
  if (absl::Status s = ValidateMasses(q, &total); !s.ok()) return s;
  std::vector<char> coded(q.size());
  int64_t num_coded = 0;
  for (size_t s = 0; s < q.size(); ++s) {
    coded[s] = code_all || q[s] > 0.0;
    num_coded += coded[s];
  }
  if (num_coded > (int64_t{1} << precision_bits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequencies: ", num_coded,
                     " symbols need frequency >= 1 but the "
                     "total is only 2^",
                     precision_bits));
  }
  return Quantize(q, coded, total, precision_bits);
}

}  // namespace

absl::StatusOr<std::vector<uint32_t>> QuantizeProbabilities(
    absl::Span<const double> masses, int precision_bits) {
  return QuantizeChecked(masses, precision_bits, /*code_all=*/false);
}

absl::StatusOr<std::vector<uint32_t>> QuantizeCumulative(
    absl::Span<const double> masses, int precision_bits) {
  if (absl::Status s = CheckPrecision(precision_bits); !s.ok()) return s;
  double total = 0.0;
  if (absl::Status s = ValidateMasses(masses, &total); !s.ok()) return s;
  const int64_t k = static_cast<int64_t>(masses.size());
  const int64_t m = int64_t{1} << precision_bits;
  if (k > m) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequencies: ", k, " symbols need frequency >= 1 but ",
                     "the total is only 2^", precision_bits));
  }
  const double room = static_cast<double>(m - k);
  std::vector<uint32_t> f(k);
  double running = 0.0;
  int64_t previous = 0;  // C_0
  for (int64_t s = 0; s < k; ++s) {
    running += masses[s];
    const int64_t next =
        s + 1 == k ? m
                   : static_cast<int64_t>(
                         std::floor(std::min(1.0, running / total) * room)) +
                         s + 1;
    f[s] = static_cast<uint32_t>(next - previous);
    previous = next;
  }
  return f;
}

absl::StatusOr<std::vector<uint32_t>> QuantizeCdf(
    const std::function<double(int)>& cdf, int num_symbols,
    int precision_bits) {
  if (num_symbols < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequencies: num_symbols = ", num_symbols));
  }
  std::vector<double> q(num_symbols);
  double previous = 0.0;
  for (int s = 0; s < num_symbols; ++s) {
    const double c = cdf(s);
    if (!std::isfinite(c) || c < previous) {
      return absl::InvalidArgumentError(absl::StrCat(
          "frequencies: cdf(", s, ") = ", c, " is not finite or is below cdf(",
          s - 1, ") = ", previous));
    }
    q[s] = c - previous;
    previous = c;
  }
  return QuantizeChecked(q, precision_bits, /*code_all=*/false);
}

absl::StatusOr<std::vector<double>> DiscretizedLogisticMixturePmf(
    absl::Span<const LogisticComponent> components, int num_symbols) {
  if (num_symbols < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("discretized logistic: num_symbols = ", num_symbols));
  }
  if (components.empty()) {
    return absl::InvalidArgumentError(
        "discretized logistic: no mixture components");
  }
  double total_weight = 0.0;
  for (size_t c = 0; c < components.size(); ++c) {
    const LogisticComponent& comp = components[c];
    if (!std::isfinite(comp.mean)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "discretized logistic: component ", c, " mean ", comp.mean));
    }
    if (!std::isfinite(comp.scale) || !(comp.scale > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("discretized logistic: component ", c, " scale ",
                       comp.scale, " (must be finite and > 0)"));
    }
    if (!std::isfinite(comp.weight) || comp.weight < 0.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("discretized logistic: component ", c, " weight ",
                       comp.weight, " (must be finite and >= 0)"));
    }
    total_weight += comp.weight;
  }
  if (!(total_weight > 0.0) || !std::isfinite(total_weight)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "discretized logistic: total mixture weight ", total_weight));
  }
  // Tail masses at the K - 1 interior bin edges t_e = (e + 0.5 - mu) / s
  // from one exponential each: with z = exp(-|t|), the smaller tail is
  // z / (1 + z) and the larger 1 / (1 + z) (both without cancellation):
  //   below[e] = P(X < edge) = sigma(t),  above[e] = P(X > edge) = sigma(-t).
  // The outer edges are -inf and +inf. A bin [lo, hi] has mass
  // above[lo] - above[hi] when t_lo >= 0 (upper tail) and below[hi] -
  // below[lo] otherwise.
  const int num_edges = num_symbols + 1;
  std::vector<double> t(num_edges), below(num_edges), above(num_edges);
  std::vector<double> pmf(num_symbols, 0.0);
  for (const LogisticComponent& comp : components) {
    const double w = comp.weight / total_weight;
    t[0] = -kInf;
    below[0] = 0.0;
    above[0] = 1.0;
    t[num_symbols] = kInf;
    below[num_symbols] = 1.0;
    above[num_symbols] = 0.0;
    for (int e = 1; e < num_symbols; ++e) {
      const double te = (static_cast<double>(e) - 0.5 - comp.mean) / comp.scale;
      const double z = DetExp(te >= 0.0 ? -te : te);
      const double small = z / (1.0 + z), large = 1.0 / (1.0 + z);
      t[e] = te;
      below[e] = te >= 0.0 ? large : small;
      above[e] = te >= 0.0 ? small : large;
    }
    for (int k = 0; k < num_symbols; ++k) {
      const double mass =
          t[k] >= 0.0 ? above[k] - above[k + 1] : below[k + 1] - below[k];
      pmf[k] += w * std::max(0.0, mass);
    }
  }
  return pmf;
}

absl::StatusOr<std::vector<uint32_t>> DiscretizedLogisticMixtureFrequencies(
    absl::Span<const LogisticComponent> components, int num_symbols,
    int precision_bits) {
  if (absl::Status s = CheckPrecision(precision_bits); !s.ok()) return s;
  if (num_symbols > 0 &&
      static_cast<int64_t>(num_symbols) > (int64_t{1} << precision_bits)) {
    return absl::InvalidArgumentError(
        absl::StrCat("discretized logistic: ", num_symbols,
                     " symbols do not fit in a total of 2^", precision_bits));
  }
  absl::StatusOr<std::vector<double>> pmf =
      DiscretizedLogisticMixturePmf(components, num_symbols);
  if (!pmf.ok()) return pmf.status();
  return QuantizeChecked(*pmf, precision_bits, /*code_all=*/true);
}

absl::StatusOr<std::vector<uint32_t>> DiscretizedLogisticFrequencies(
    double mean, double scale, int num_symbols, int precision_bits) {
  const LogisticComponent one{1.0, mean, scale};
  return DiscretizedLogisticMixtureFrequencies({&one, 1}, num_symbols,
                                               precision_bits);
}

absl::StatusOr<FrequencyTable> FrequencyTable::Create(
    std::vector<uint32_t> freqs, int precision_bits) {
  if (absl::Status s = CheckPrecision(precision_bits); !s.ok()) return s;
  if (freqs.empty()) {
    return absl::InvalidArgumentError("FrequencyTable: no symbols");
  }
  if (freqs.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError("FrequencyTable: too many symbols");
  }
  const uint64_t m = uint64_t{1} << precision_bits;
  std::vector<uint32_t> starts(freqs.size() + 1);
  uint64_t sum = 0;
  for (size_t s = 0; s < freqs.size(); ++s) {
    starts[s] = static_cast<uint32_t>(std::min(sum, m));
    sum += freqs[s];
  }
  if (sum != m) {
    return absl::InvalidArgumentError(
        absl::StrCat("FrequencyTable: frequencies sum to ", sum, ", not 2^",
                     precision_bits, " = ", m));
  }
  starts.back() = static_cast<uint32_t>(m);
  return FrequencyTable(std::move(freqs), std::move(starts), precision_bits);
}

}  // namespace flowtape::compression
