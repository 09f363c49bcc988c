// Collectives over tensors: the gradient all-reduce of data-parallel training
// and the broadcast of a model's state.
//
// GradientAllReduce: for parameters p_1..p_K of one dtype T, rank r holding
// gradients g_k^r and a weight w_r, every rank ends with
//   g_k <- sum_r w_r g_k^r                      (Communicator::AllReduceSum)
// computed on the concatenation [w_r g_1^r, ..., w_r g_K^r, d^r, e^r] in
// buckets of at most `bucket_bytes` (one staging buffer, reused: one call per
// bucket, not per tensor), in T. d^r_k = 1 if p_k has a gradient on rank r
// (an undefined gradient is sent as zeros), so after the call
// defined_count(k) says on how many ranks it had one; e^r are caller scalars
// summed alongside (e.g. the weighted loss), in T. Gradients are written back
// into the parameters that had one locally.
//
// BroadcastTensors: every tensor's values from `root` (each dtype packed into
// one buffer). Tensors must be writable constants of the same shapes and
// dtypes on every rank.
#ifndef FLOWTAPE_PARALLEL_TENSOR_COLLECTIVES_H_
#define FLOWTAPE_PARALLEL_TENSOR_COLLECTIVES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "autodiff/tensor.h"
#include "parallel/communicator.h"

namespace flowtape::parallel {

class GradientAllReduce {
 public:
  // Parameters must share one dtype (that of the model).
  explicit GradientAllReduce(std::vector<Tensor> params,
                             size_t bucket_bytes = size_t{1} << 20);

  // Replaces every gradient by the weighted sum over ranks (see above);
  // `extras` are summed in place. Returns the communicator's error, if any.
  absl::Status Run(Communicator& comm, double weight,
                   absl::Span<double> extras = {});

  // After Run: number of ranks on which parameter k had a gradient.
  int defined_count(size_t k) const { return counts_[k]; }
  // Bytes each rank passed to AllReduceSum in the last Run, and the seconds
  // it spent inside those calls (waiting for peers included).
  int64_t last_bytes() const { return last_bytes_; }
  double last_seconds() const { return last_seconds_; }

 private:
  template <typename T>
  absl::Status RunTyped(Communicator& comm, double weight,
                        absl::Span<double> extras);
  std::vector<Tensor> params_;
  DType dtype_;
  size_t bucket_elements_;
  std::vector<float> staging_f_;
  std::vector<double> staging_d_;
  std::vector<int> counts_;
  int64_t last_bytes_ = 0;
  double last_seconds_ = 0.0;
};

absl::Status BroadcastTensors(Communicator& comm,
                              const std::vector<Tensor>& tensors, int root);

}  // namespace flowtape::parallel

#endif  // FLOWTAPE_PARALLEL_TENSOR_COLLECTIVES_H_
