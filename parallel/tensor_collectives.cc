#include "parallel/tensor_collectives.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "autodiff/check.h"
#include "autodiff/status_macros.h"

namespace flowtape::parallel {
namespace {

using Clock = std::chrono::steady_clock;

template <typename T>
std::vector<T>& Staging(std::vector<float>& f, std::vector<double>& d) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else {
    return d;
  }
}

}  // namespace

GradientAllReduce::GradientAllReduce(std::vector<Tensor> params,
                                     size_t bucket_bytes)
    : params_(std::move(params)),
      dtype_(params_.empty() ? kFloat64 : params_[0].dtype()),
      counts_(params_.size(), 0) {
  for (const Tensor& p : params_)
    FT_CHECK(p.dtype() == dtype_, "gradient_all_reduce: parameters of ",
             DTypeName(dtype_), " and ", DTypeName(p.dtype()));
  bucket_elements_ = std::max<size_t>(bucket_bytes / DTypeSize(dtype_), 64);
}

absl::Status GradientAllReduce::Run(Communicator& comm, double weight,
                                    absl::Span<double> extras) {
  return VisitDType(dtype_, [&](auto zero) {
    return RunTyped<decltype(zero)>(comm, weight, extras);
  });
}

template <typename T>
absl::Status GradientAllReduce::RunTyped(Communicator& comm, double weight,
                                         absl::Span<double> extras) {
  // The virtual array: gradients, then one flag per parameter, then extras.
  std::vector<T*> grads(params_.size(), nullptr);
  int64_t total = 0;
  for (size_t k = 0; k < params_.size(); ++k) {
    Tensor g = params_[k].grad();
    if (g.defined()) grads[k] = g.template mutable_data<T>();
    total += params_[k].numel();
  }
  const int64_t flags_at = total;
  total += static_cast<int64_t>(params_.size() + extras.size());
  std::vector<T>& staging = Staging<T>(staging_f_, staging_d_);
  staging.resize(std::min<int64_t>(total, bucket_elements_));
  const T w = static_cast<T>(weight);
  last_bytes_ = total * static_cast<int64_t>(sizeof(T));
  last_seconds_ = 0.0;

  size_t k = 0;    // parameter holding the chunk's first gradient element
  int64_t at = 0;  // its first element's index in the virtual array
  for (int64_t begin = 0; begin < total;) {
    const int64_t end = std::min<int64_t>(
        total, begin + static_cast<int64_t>(bucket_elements_));
    // Pack [begin, end).
    size_t pk = k;
    int64_t pat = at;
    for (int64_t i = begin; i < end;) {
      if (i < flags_at) {
        while (i >= pat + params_[pk].numel()) pat += params_[pk++].numel();
        const int64_t off = i - pat;
        const int64_t len = std::min(end, pat + params_[pk].numel()) - i;
        T* dst = staging.data() + (i - begin);
        if (grads[pk] == nullptr) {
          std::fill(dst, dst + len, T(0));
        } else if (weight == 1.0) {
          std::copy(grads[pk] + off, grads[pk] + off + len, dst);
        } else {
          const T* src = grads[pk] + off;
          for (int64_t j = 0; j < len; ++j) dst[j] = w * src[j];
        }
        i += len;
      } else if (i < flags_at + static_cast<int64_t>(params_.size())) {
        staging[i - begin] = grads[i - flags_at] != nullptr ? T(1) : T(0);
        ++i;
      } else {
        staging[i - begin] = static_cast<T>(
            extras[i - flags_at - static_cast<int64_t>(params_.size())]);
        ++i;
      }
    }
    const Clock::time_point t0 = Clock::now();
    absl::Status s =
        comm.AllReduceSum(absl::MakeSpan(staging.data(), end - begin));
    last_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
    if (!s.ok()) return s;
    // Unpack [begin, end).
    for (int64_t i = begin; i < end;) {
      if (i < flags_at) {
        while (i >= at + params_[k].numel()) at += params_[k++].numel();
        const int64_t off = i - at;
        const int64_t len = std::min(end, at + params_[k].numel()) - i;
        if (grads[k] != nullptr)
          std::copy(staging.data() + (i - begin),
                    staging.data() + (i - begin) + len, grads[k] + off);
        i += len;
      } else if (i < flags_at + static_cast<int64_t>(params_.size())) {
        counts_[i - flags_at] =
            static_cast<int>(std::lround(staging[i - begin]));
        ++i;
      } else {
        extras[i - flags_at - static_cast<int64_t>(params_.size())] =
            static_cast<double>(staging[i - begin]);
        ++i;
      }
    }
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status BroadcastTensors(Communicator& comm,
                              const std::vector<Tensor>& tensors, int root) {
  if (comm.size() == 1) return absl::OkStatus();
  for (DType d : {kFloat32, kFloat64}) {
    absl::Status s = VisitDType(d, [&](auto zero) {
      using T = decltype(zero);
      std::vector<T> buffer;
      for (const Tensor& t : tensors)
        if (t.dtype() == d)
          buffer.insert(buffer.end(), t.template data<T>(),
                        t.template data<T>() + t.numel());
      FT_RETURN_IF_ERROR(comm.Broadcast(absl::MakeSpan(buffer), root));
      size_t at = 0;
      for (Tensor t : tensors)
        if (t.dtype() == d) {
          std::copy(buffer.begin() + at, buffer.begin() + at + t.numel(),
                    t.template mutable_data<T>());
          at += t.numel();
        }
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace flowtape::parallel
