// Tensor: a dense, contiguous, row-major array (rank 0..4) of float32 or
// float64 (dtype.h) that is either a constant or a node on the current
// thread's tape (see tape.h).
//
// Copying a Tensor is cheap: constants share reference-counted heap storage;
// tape values live in the tape's arena and stay valid until the tape is reset
// or rewound past them (using one afterwards fails loudly: "stale tensor").
// A constant marked requires_grad (a parameter) becomes a leaf node the first
// time an op uses it on a tape; Backward() accumulates into its grad().
//
// Values: data<T>() / mutable_data<T>() with T = float or double matching
// dtype() (a mismatch fails loudly); item(), ToVector() and operator[]
// convert to double whatever the dtype. Factories default to float64.
//
// Threads: each thread records on its own tape, and a tape keeps its own
// parameter leaves (tape.h), so threads may share parameters for reading
// (inference, replicas reading one model). Backward() accumulates into the
// shared grad() without locks: concurrent Backward()s over one parameter
// race; data-parallel training gives each thread its own replica.
#ifndef FLOWTAPE_AUTODIFF_TENSOR_H_
#define FLOWTAPE_AUTODIFF_TENSOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/dtype.h"
#include "autodiff/rng.h"
#include "autodiff/shape.h"

namespace flowtape {

struct Node;
class Tape;

namespace internal {
// Heap storage of a constant (or parameter) tensor.
struct Storage {
  Storage(int64_t n, DType dtype);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  // Replaces the values by their conversion to `dtype` (Module::To); every
  // Tensor sharing this storage sees the new dtype.
  void ConvertTo(DType dtype);

  void* data;
  int64_t size;
  DType dtype;
  uint64_t id;  // unique in the process: keys the tapes' leaf caches
  bool requires_grad = false;
  std::shared_ptr<Storage> grad;  // accumulated by Backward()
  // Computed with recording off from a parameter, a tape value or another
  // such constant (NoGradScope, plain backward sweeps): Backward() of it is a
  // mistake, not a zero gradient. Detach() makes an unmarked copy.
  bool unrecorded = false;
  // Set by Tensor::UnitColumn alone and cleared by any write access: the
  // values are zero outside column `unit_column` of the row-major
  // [size / unit_width, unit_width] array (the product kernel then skips
  // its zero scan, autodiff/gemm.h).
  int64_t unit_column = -1, unit_width = 0;
};
}  // namespace internal

class Tensor {
 public:
  Tensor() = default;  // undefined

  // ---- factories (constants) ----
  static Tensor Empty(const Shape& shape, DType dtype = kFloat64);
  static Tensor Zeros(const Shape& shape, DType dtype = kFloat64);
  static Tensor Ones(const Shape& shape, DType dtype = kFloat64);
  static Tensor Full(const Shape& shape, double value, DType dtype = kFloat64);
  static Tensor Scalar(double value, DType dtype = kFloat64);
  static Tensor FromVector(const Shape& shape, const std::vector<double>& v,
                           DType dtype = kFloat64);
  static Tensor Eye(int64_t n, DType dtype = kFloat64);
  // e_j: ones in column j of [rows, cols], zeros elsewhere (the seed of
  // the j-th reverse pass of a Jacobian or exact trace); products with it
  // know its zeros without scanning (gemm.h).
  static Tensor UnitColumn(int64_t rows, int64_t cols, int64_t j,
                           DType dtype = kFloat64);
  // Draws in float64 (Rng), rounded to dtype: both dtypes see one stream.
  static Tensor Randn(const Shape& shape, Rng& rng, DType dtype = kFloat64);
  static Tensor Rand(const Shape& shape, Rng& rng,
                     DType dtype = kFloat64);  // U[0, 1)
  static Tensor Rademacher(const Shape& shape, Rng& rng,
                           DType dtype = kFloat64);  // +-1

  bool defined() const {
    return storage_ != nullptr || node_ != nullptr || data_ != nullptr;
  }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int axis) const { return shape_[axis]; }
  int64_t numel() const { return shape_.numel(); }
  DType dtype() const;

  template <typename T>
  const T* data() const {
    return static_cast<const T*>(TypedData(kDTypeOf<T>, "data"));
  }
  // Writable values of a constant (or of an op's fresh output, op_kit.h);
  // fails loudly on a tape value. Changing a parameter that the live tape
  // still references invalidates that graph.
  template <typename T>
  T* mutable_data() {
    TypedData(kDTypeOf<T>, "mutable_data");
    return static_cast<T*>(raw_mutable_data());
  }
  double item() const;  // value of a one-element tensor, as double
  double operator[](int64_t flat_index) const;  // as double
  std::vector<double> ToVector() const;         // as doubles
  const void* raw_data() const;

  // ---- autodiff ----
  bool requires_grad() const;  // parameter, or a tape node that needs grads
  // Marks a constant as a parameter (leaf that receives grads). Returns *this.
  Tensor& set_requires_grad(bool on);
  bool is_constant() const { return node_ == nullptr; }
  Tensor grad() const;  // accumulated gradient of a parameter (or undefined)
  void ZeroGrad();
  Tensor Detach() const;  // same values as a new constant (a copy)
  Tensor Clone() const { return Detach(); }

  // ---- internals used by the tape and the op kit ----
  // Node for this tensor on the current tape, creating a leaf for parameters
  // and a constant leaf (pinning the storage) when `materialize` is true.
  // Returns nullptr for a constant when !materialize.
  Node* NodeForOp(bool materialize) const;
  Node* node() const;  // validated node (nullptr for constants)
  static Tensor FromNode(Node* node);
  // A writable buffer not yet on the tape (an op's output before recording).
  static Tensor FromArena(const Shape& shape, DType dtype, void* data);
  // Same values (and storage) seen with another shape of equal numel.
  static Tensor Alias(const Tensor& base, const Shape& shape);
  const std::shared_ptr<internal::Storage>& storage() const { return storage_; }

 private:
  friend class Op;  // op_kit.h: resolves each input once per op
  // The values, after one validation; fails loudly unless dtype() == want.
  const void* TypedData(DType want, const char* what) const;
  void* raw_mutable_data();
  Shape shape_;
  DType dtype_ = kFloat64;  // arena buffers only; else storage / node
  void* data_ = nullptr;    // arena buffer before recording
  std::shared_ptr<internal::Storage> storage_;  // owner for constants
  Node* node_ = nullptr;                        // tape node, if any
  uint64_t serial_ = 0;                         // node_'s serial when taken
};

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_TENSOR_H_
