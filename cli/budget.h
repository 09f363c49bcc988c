// Memory budget of a run configured from the command line: the size flags'
// cost is estimated and checked before anything is allocated, so a typo
// such as --n_train=1000000000000 or --hidden=100000,100000 is a clear
// InvalidArgument naming the flags instead of an abort or a machine that
// runs out of memory.
//
// The estimate counts float64 values (8 bytes each):
//   P parameters, R replicas    -> 4 P R (parameter, gradient, Adam's m, v
//                                  in each data-parallel replica's model
//                                  copy; R = max(1, replicas))
//   A activations per example,
//     batch B                   -> 3 A B (each op's output on the tape and
//                                  its adjoint; README measures the tape at
//                                  2.0x the activation bytes, 3 is headroom)
//   D values of data in memory  -> D    (train + validation + test sets)
//   bytes = 8 (4 P R + 3 A B + D)   (B: the global batch, split over
//                                    the replicas)
// Inputs are doubles, so absurd flag values give huge (or infinite) byte
// counts, never an integer overflow. The estimate is an order of magnitude,
// not a prediction to the byte: MLP-conditioned flows count every layer's
// MLP (families without one, such as planar, are overestimated).
//
// Limit: MemoryLimitBytes(gb) = gb GiB when gb > 0, else the memory this
// process can get now: the least of MemAvailable (/proc/meminfo) and the
// cgroup's limit (v2 /sys/fs/cgroup/memory.max unless "max", v1
// /sys/fs/cgroup/memory/memory.limit_in_bytes) among those that can be
// read; when none can, the machine's physical memory (sysconf), and 8 GiB
// when even that is unknown. MemoryLimitFrom is that rule on the files'
// texts (empty: not readable). The cli/ programs take gb from
// --max_memory_gb (cli/checks.h). CheckMemory returns
// InvalidArgument "<flags>: the run needs about X GiB (...), above the
// memory limit of Y GiB (--max_memory_gb)" when bytes > limit.
//
// ParseSizeList("hidden", "64,64") -> {64, 64}: a comma-separated list of
// positive decimal integers (no sign, spaces, empty items or overflow),
// else InvalidArgument naming the flag and the bad item.
// ParseIntegerList("euler_steps", "1,2,4", 1, 100000) -> {1, 2, 4}: the
// same items, each in [lo, hi].
// ParseDecimalList("scales", "0.5,1", "in (0, 1e6]", pred) -> {0.5, 1}: a
// comma-separated list of decimals (data/number.h: no inf, nan, hex floats,
// spaces or empty items; overflow and underflow are errors), each with
// pred(v) true, else InvalidArgument "--scales: bad item 'x' (a
// comma-separated list of decimals in (0, 1e6])". The experiments' list
// flags (--scales, --deltas, --rd_deltas, --sample_tols, --euler_steps)
// are read with these.
#ifndef FLOWTAPE_CLI_BUDGET_H_
#define FLOWTAPE_CLI_BUDGET_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flowtape::cli {

struct Footprint {
  double parameters = 0;               // trainable scalars
  double activations_per_example = 0;  // values the forward pass makes
  double batch = 0;                    // examples per step (or per chunk)
  double data_values = 0;              // values held as data sets
  double replicas = 1;                 // model copies (data parallelism)
  double Bytes() const;
};

// A multilayer perceptron in -> hidden[0] -> ... -> out (weights + biases).
double MlpParameters(double in, const std::vector<int64_t>& hidden, double out);
// Values it computes per example (every layer's pre- and post-activation).
double MlpActivations(double in, const std::vector<int64_t>& hidden,
                      double out);

// A stack of `layers` flow steps on D dimensions (plus `context` inputs),
// each with an MLP conditioner D + context -> hidden -> 2 D (affine
// couplings, MADE, ODE nets), trained with minibatches of `batch` on
// `data_values` values of data.
Footprint FlowFootprint(double layers, double dim, double context,
                        const std::vector<int64_t>& hidden, double batch,
                        double data_values);

// `steps` convolutional coupling steps on images of `channels` x `pixels`
// (after any squeeze), 3x3 conv nets with `hidden` channels.
Footprint ConvFlowFootprint(double steps, double channels, double pixels,
                            double hidden, double batch, double data_values);

// The image experiments' models (models/image_flow.h): glow (levels x depth
// steps on 4C x HW/4 after the squeeze), realnvp (layers conv couplings)
// or, for any other family, a vector flow on C*H*W values.
Footprint ImageFlowFootprint(const std::string& flow, int layers, int levels,
                             int depth, int64_t channels,
                             const std::vector<int64_t>& hidden,
                             int64_t context, int64_t c, int64_t h, int64_t w,
                             double batch);

double MemoryLimitBytes(double max_memory_gb);
double MemoryLimitFrom(const std::string& meminfo,
                       const std::string& cgroup2_max,
                       const std::string& cgroup1_limit, double physical_bytes);
absl::Status CheckMemory(const Footprint& f, const std::string& flags,
                         double limit_bytes);

absl::StatusOr<std::vector<int64_t>> ParseSizeList(const std::string& flag,
                                                   const std::string& text);
absl::StatusOr<std::vector<int64_t>> ParseIntegerList(const std::string& flag,
                                                      const std::string& text,
                                                      int64_t lo, int64_t hi);
absl::StatusOr<std::vector<double>> ParseDecimalList(
    const std::string& flag, const std::string& text, const std::string& range,
    const std::function<bool(double)>& pred);

}  // namespace flowtape::cli

#endif  // FLOWTAPE_CLI_BUDGET_H_
