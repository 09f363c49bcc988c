// Tape: the thread-local record of tensor operations for reverse-mode autodiff.
//
// One Node per op on whole tensors. Nodes, their input lists and their output
// values are bump-allocated in an arena, in creation order, so creation order
// is a topological order and Reset() (or RewindTo(mark)) is O(1) in the
// number of nodes: memory is kept for the next step, nothing is destructed.
// Each thread has its own tape, so two threads can train two models at once.
//
// A backward rule maps the adjoint g of an op's output to adjoints of its
// inputs, written with Tensor ops: when Grad(..., create_graph=true) runs, the
// rules are themselves recorded, giving gradients of gradients to any order.
// Ops are written with the public kit in op_kit.h; this header is the tape.
#ifndef FLOWTAPE_AUTODIFF_TAPE_H_
#define FLOWTAPE_AUTODIFF_TAPE_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "autodiff/dtype.h"
#include "autodiff/shape.h"
#include "autodiff/tensor.h"

namespace flowtape {

class OpContext;  // op_kit.h

// Maps the adjoint of an op's output to adjoints of its inputs: writes
// grad_inputs[i] for the inputs that need one (op_kit.h).
using BackwardFn = void (*)(const OpContext& ctx, const Tensor& grad_output,
                            Tensor* grad_inputs);

// One recorded op (or leaf) on the tape.
struct Node {
  const char* op;  // op name, for messages
  Shape shape;
  DType dtype;
  uint8_t flags;       // NodeFlag bits
  bool requires_grad;  // on a path from some parameter
  int num_inputs;
  void* value;
  Node** inputs;
  BackwardFn backward;              // nullptr for leaves
  int64_t id;                       // position on the tape
  uint64_t serial;                  // unique per tape, detects stale tensors
  internal::Storage* leaf_storage;  // parameters: where grads accumulate
  // Values saved for the backward rule (op_kit.h: Op::Save*).
  double saved_doubles[4];
  int64_t saved_ints[6];
  int num_saved_doubles, num_saved_ints;
  const void* saved_object;   // Op::SaveArray / Op::SaveObject, else nullptr
  int64_t saved_object_size;  // elements of a saved array
};

// Uniform adjoints, for plain (not create_graph) sweeps: a full reduction may
// hand its scalar adjoint on unexpanded, saving a pass that writes it out and
// one that reads it. A consumer whose rule broadcasts a scalar adjoint itself
// takes it as is; every other node gets it expanded to its shape first.
enum NodeFlag : uint8_t {
  kEmitsUniformAdjoint = 1,  // backward may return a rank-0 input adjoint
  kTakesUniformAdjoint = 2,  // backward accepts a rank-0 output adjoint
  // A leaf of a Tensor::UnitColumn: its only nonzero column is
  // saved_ints[0] of a row width saved_ints[1].
  kUnitColumnLeaf = 4,
};

class Tape {
 public:
  // The calling thread's tape.
  static Tape& Get();

  struct Mark {
    size_t block, offset, nodes, pinned;
  };
  Mark GetMark() const;
  // Drops every node recorded after `mark` (tensors from them become stale).
  void RewindTo(const Mark& mark);
  void Reset() { RewindTo(Mark{0, 0, 0, 0}); }

  int64_t num_nodes() const { return static_cast<int64_t>(nodes_.size()); }
  Node* node(int64_t id) const { return nodes_[id]; }
  size_t bytes_in_use() const;    // arena bytes holding nodes and values now
  size_t bytes_reserved() const;  // arena capacity kept for reuse

  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }

  // ---- used by the op kit ----
  void* Allocate(size_t bytes);  // 64-byte aligned, arena
  // A node for op `op` whose value lives at `value` (arena), with inputs
  // inputs[0..n) already on this tape; saved values start empty.
  Node* NewNode(const char* op, const Shape& shape, DType dtype, void* value,
                Node* const* inputs, int n, BackwardFn backward);
  // The leaf of a constant or parameter on this tape: one per storage (a
  // per-tape cache, so threads sharing a parameter never share a leaf),
  // pinning the storage until the tape drops the leaf.
  Node* LeafFor(const std::shared_ptr<internal::Storage>& s,
                const Shape& shape);
  // Keeps `object` alive until the tape is reset or rewound past this point.
  void Pin(std::shared_ptr<const void> object) {
    pinned_.push_back(std::move(object));
  }
  // True if n is a live node of this tape with that serial. Serials carry the
  // tape's id in their top bits, so nodes of other (maybe dead) tapes are
  // rejected without being dereferenced.
  bool Owns(const Node* n, uint64_t serial) const;
  // Low bits: nodes recorded so far (2^40, then recording aborts rather than
  // reuse a serial); high bits: the tape's id (2^24 tapes per process).
  static constexpr int kSerialBits = 40;
  // Tests only: pretends `count` nodes were recorded on this tape already.
  void set_serial_count_for_testing(uint64_t count) {
    next_serial_ = (uid_ << kSerialBits) + count;
  }

 private:
  Tape();
  struct Block {
    std::unique_ptr<char, void (*)(void*)> mem;
    size_t size;
  };
  std::vector<Block> blocks_;
  size_t block_ = 0, offset_ = 0;
  std::vector<Node*> nodes_;
  std::vector<std::shared_ptr<const void>> pinned_;
  // Storage id -> (leaf, its serial); entries may be stale after a rewind
  // (checked with Owns) and are dropped by Reset.
  absl::flat_hash_map<uint64_t, std::pair<Node*, uint64_t>> leaves_;
  uint64_t uid_;          // unique per tape (per thread)
  uint64_t next_serial_;  // (uid_ << kSerialBits) + count
  bool grad_enabled_ = true;
};

// Disables recording in its scope (ops return constants).
class NoGradScope {
 public:
  NoGradScope() : prev_(Tape::Get().grad_enabled()) {
    Tape::Get().set_grad_enabled(false);
  }
  ~NoGradScope() { Tape::Get().set_grad_enabled(prev_); }
  NoGradScope(const NoGradScope&) = delete;
  NoGradScope& operator=(const NoGradScope&) = delete;

 private:
  bool prev_;
};

// Enables recording in its scope, e.g. inside a no-grad region.
class EnableGradScope {
 public:
  EnableGradScope() : prev_(Tape::Get().grad_enabled()) {
    Tape::Get().set_grad_enabled(true);
  }
  ~EnableGradScope() { Tape::Get().set_grad_enabled(prev_); }
  EnableGradScope(const EnableGradScope&) = delete;
  EnableGradScope& operator=(const EnableGradScope&) = delete;

 private:
  bool prev_;
};

// Rewinds the tape to where it was at construction (nested sub-computations,
// e.g. the many VJPs of an ODE adjoint solve).
class TapeScope {
 public:
  TapeScope() : mark_(Tape::Get().GetMark()) {}
  ~TapeScope() { Tape::Get().RewindTo(mark_); }
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  Tape::Mark mark_;
};

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_TAPE_H_
