// Tensor: a dense, contiguous, row-major array of doubles (rank 0..4) that is
// either a constant or a node on the current thread's tape (see tape.h).
//
// Copying a Tensor is cheap: constants share reference-counted heap storage;
// tape values live in the tape's arena and stay valid until the tape is reset
// or rewound past them (using one afterwards fails loudly: "stale tensor").
// A constant marked requires_grad (a parameter) becomes a leaf node the first
// time an op uses it on a tape; Backward() accumulates into its grad().
// Thread safety: each thread records on its own tape; a parameter may be used
// by one thread's tape at a time (two threads train two models, not one).
#ifndef FLOWTAPE_AUTODIFF_TENSOR_H_
#define FLOWTAPE_AUTODIFF_TENSOR_H_

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "autodiff/shape.h"

namespace flowtape {

struct Node;
class Tape;

// Seedable random source used by every sampler in flowtape.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : gen_(seed) {}
  double Normal() { return normal_(gen_); }
  double Uniform() { return uniform_(gen_); }  // in [0, 1)
  int64_t UniformInt(int64_t n) {              // in [0, n)
    return std::uniform_int_distribution<int64_t>(0, n - 1)(gen_);
  }
  std::mt19937_64& engine() { return gen_; }

 private:
  std::mt19937_64 gen_;
  std::normal_distribution<double> normal_;
  std::uniform_real_distribution<double> uniform_;
};

namespace internal {
// Heap storage of a constant (or parameter) tensor.
struct Storage {
  explicit Storage(int64_t n);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  double* data;
  int64_t size;
  bool requires_grad = false;
  std::shared_ptr<Storage> grad;  // accumulated by Backward()
  Shape grad_shape;
  // Leaf node of this storage on a tape (valid while Tape::Owns(leaf, serial)).
  Node* leaf = nullptr;
  uint64_t leaf_serial = 0;
  // Computed with recording off from a parameter, a tape value or another
  // such constant (NoGradScope, plain backward sweeps): Backward() of it is a
  // mistake, not a zero gradient. Detach() makes an unmarked copy.
  bool unrecorded = false;
};
}  // namespace internal

class Tensor {
 public:
  Tensor() = default;  // undefined

  // ---- factories (constants) ----
  static Tensor Empty(const Shape& shape);  // uninitialised values
  static Tensor Zeros(const Shape& shape);
  static Tensor Ones(const Shape& shape);
  static Tensor Full(const Shape& shape, double value);
  static Tensor Scalar(double value);
  static Tensor FromVector(const Shape& shape, const std::vector<double>& v);
  static Tensor Eye(int64_t n);
  static Tensor Randn(const Shape& shape, Rng& rng);       // N(0, 1)
  static Tensor Rand(const Shape& shape, Rng& rng);        // U[0, 1)
  static Tensor Rademacher(const Shape& shape, Rng& rng);  // +-1

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int axis) const { return shape_[axis]; }
  int64_t numel() const { return shape_.numel(); }

  const double* data() const;
  // Writable values of a constant; fails loudly on a tape value. Changing a
  // parameter that the live tape still references invalidates that graph.
  double* mutable_data();
  double item() const;  // value of a one-element tensor
  double operator[](int64_t flat_index) const { return data()[flat_index]; }
  std::vector<double> ToVector() const;

  // ---- autodiff ----
  bool requires_grad() const;  // parameter, or a tape node that needs grads
  // Marks a constant as a parameter (leaf that receives grads). Returns *this.
  Tensor& set_requires_grad(bool on);
  bool is_constant() const { return node_ == nullptr; }
  Tensor grad() const;  // accumulated gradient of a parameter (or undefined)
  void ZeroGrad();
  Tensor Detach() const;  // same values as a new constant (a copy)
  Tensor Clone() const { return Detach(); }

  // ---- internals used by ops and the tape ----
  // Node for this tensor on the current tape, creating a leaf for parameters
  // and a constant leaf (pinning the storage) when `materialize` is true.
  // Returns nullptr for a constant when !materialize.
  Node* NodeForOp(bool materialize) const;
  Node* node() const;  // validated node (nullptr for constants)
  static Tensor FromNode(Node* node);
  // Arena buffer not yet on the tape (between NewOutput and Record).
  static Tensor FromArena(const Shape& shape, double* data);
  // Same values (and storage) seen with another shape of equal numel.
  static Tensor Alias(const Tensor& base, const Shape& shape);
  const std::shared_ptr<internal::Storage>& storage() const { return storage_; }

 private:
  Shape shape_;
  double* data_ = nullptr;
  std::shared_ptr<internal::Storage> storage_;  // owner for constants
  Node* node_ = nullptr;                        // tape node, if any
  uint64_t serial_ = 0;                         // node_'s serial when taken
};

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_TENSOR_H_
