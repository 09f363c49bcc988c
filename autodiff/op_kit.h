// The op kit: how every differentiable op in flowtape is written, and how
// you write your own. An op computes its value and, when some input requires
// grad, records one tape node whose backward rule maps the adjoint g of the
// output to adjoints of the inputs. Value and rule sit side by side:
//
//   // y = x^2 + 1,  dx = 2 x g
//   Tensor SquarePlusOne(const Tensor& x) {
//     Op op("square_plus_one", {x});
//     Tensor y = op.NewOutput(x.shape());
//     VisitDType(op.dtype(), [&](auto zero) {
//       using T = decltype(zero);
//       const T* px = x.data<T>();
//       T* py = y.mutable_data<T>();
//       for (int64_t i = 0; i < x.numel(); ++i) py[i] = px[i] * px[i] + 1;
//     });
//     return op.Finish(y, [](const OpContext& c, const Tensor& g,
//                            Tensor* grad_inputs) {
//       grad_inputs[0] = GradMul(g, 2.0 * c.input(0));
//     });
//   }
//
// Elementwise ops need less: MapUnary(name, x, rule, [](auto v) { ... }),
// MapArray (an Eigen array expression, vectorised) and MapBinary (NumPy
// broadcasting) run the loop for both dtypes.
//
// Contract:
// - Inputs share one dtype; Op fails loudly naming the op, both dtypes and
//   shapes otherwise. The output has that dtype unless NewOutput names
//   another (Cast).
// - A backward rule is written with Tensor ops, so it is differentiable
//   again (gradients of any order). It sets grad_inputs[i] only where
//   ctx.needs_grad(i) (an undefined adjoint means zero): the sweep knows
//   which inputs lead to a requested gradient, and Grad(f, {z}) never pays
//   for a parameter's adjoint.
// - When GradColumns wants only some columns of a rank-2 input's adjoint,
//   ctx.wanted_columns(i, &begin, &width) says which; a rule may return
//   just those (Affine and MatMulT do: G times a slice of the weight), or
//   the whole adjoint, which the sweep narrows.
// - A rule never turns a zero adjoint into NaN where a derivative is
//   infinite: multiply with GradMul (ops.h).
// - Saved values: SaveDouble / SaveInt (a few scalars on the node),
//   SaveArray (an int64 array copied to the tape's arena), SaveObject (any
//   object, kept alive by the tape until it is reset or rewound). Read them
//   back with saved_double(k), saved_int(k), saved_array(),
//   saved_object<T>(). Nothing is kept when the op is not recorded.
// - NewOutput's buffer is writable (mutable_data<T>) until Finish. An op
//   whose output is an input's values in another shape (Reshape) takes
//   NewView(i, shape) instead: no copy, and nothing to write.
// - A rule may compute its adjoint with a fused kernel instead of ops when
//   !ctx.create_graph() (nothing records it), reading values through
//   input_data<T>(i) / output_data<T>(); the op-built path stays the
//   reference for higher orders.
#ifndef FLOWTAPE_AUTODIFF_OP_KIT_H_
#define FLOWTAPE_AUTODIFF_OP_KIT_H_

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "autodiff/check.h"
#include "autodiff/dtype.h"
#include "autodiff/kernels.h"
#include "autodiff/shape.h"
#include "autodiff/tape.h"
#include "autodiff/tensor.h"

namespace flowtape {

namespace internal {
// What a backward sweep knows (grad.cc): which nodes lead to a requested
// gradient (reach[id - min_id]; null: every node that requires grad), and
// the node of which only columns [column_begin, + column_width) are wanted
// (GradColumns; -1: none).
struct SweepInfo {
  const uint8_t* reach = nullptr;
  int64_t min_id = 0;
  bool create_graph = false;
  int64_t column_id = -1, column_begin = 0, column_width = 0;
};
}  // namespace internal

// What a backward rule sees.
class OpContext {
 public:
  OpContext(const Node* node, const internal::SweepInfo* sweep)
      : node_(node), sweep_(sweep) {}

  int num_inputs() const { return node_->num_inputs; }
  // Input and output values as tape tensors (higher-order graphs connect).
  Tensor input(int i) const { return Tensor::FromNode(node_->inputs[i]); }
  Tensor output() const { return Tensor::FromNode(const_cast<Node*>(node_)); }
  const Shape& input_shape(int i) const { return node_->inputs[i]->shape; }
  const Shape& output_shape() const { return node_->shape; }
  DType dtype() const { return node_->dtype; }
  const char* op_name() const { return node_->op; }
  // Input i is on a path to a gradient this sweep computes.
  bool needs_grad(int i) const;
  // True when only columns [*begin, *begin + *width) of rank-2 input i's
  // adjoint are wanted (GradColumns): the rule may return just those, an
  // [rows, width] adjoint (a full one is narrowed by the sweep).
  bool wanted_columns(int i, int64_t* begin, int64_t* width) const;
  // The rule's own ops are recorded (Grad with create_graph).
  bool create_graph() const {
    return sweep_ != nullptr && sweep_->create_graph;
  }

  double saved_double(int k) const;
  int64_t saved_int(int k) const;
  std::vector<int64_t> saved_array() const;
  template <typename T>
  const T& saved_object() const {
    FT_CHECK(node_->saved_object != nullptr, node_->op,
             ": backward reads a saved object that was never saved");
    return *static_cast<const T*>(node_->saved_object);
  }
  // Raw values for fused (not create_graph) kernels.
  template <typename T>
  const T* input_data(int i) const {
    CheckDType(kDTypeOf<T>);
    return static_cast<const T*>(node_->inputs[i]->value);
  }
  template <typename T>
  const T* output_data() const {
    CheckDType(kDTypeOf<T>);
    return static_cast<const T*>(node_->value);
  }
  uint8_t flags() const { return node_->flags; }

 private:
  void CheckDType(DType want) const;
  const Node* node_;
  const internal::SweepInfo* sweep_;
};

// Builds one op: checks its inputs, decides whether it is recorded, hands
// out its output buffer and records it with its backward rule.
class Op {
 public:
  Op(const char* name,
     std::initializer_list<std::reference_wrapper<const Tensor>> inputs);
  Op(const char* name, const std::vector<Tensor>& inputs);
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  const char* name() const { return name_; }
  DType dtype() const { return dtype_; }  // the inputs' common dtype
  bool recording() const { return record_; }

  // The output buffer: tape arena when recording, else a fresh constant.
  Tensor NewOutput(const Shape& shape) { return NewOutput(shape, dtype_); }
  Tensor NewOutput(const Shape& shape, DType dtype);
  // An output that is input i's values seen with another shape of equal
  // numel (zero-copy: Reshape). Never written. When not recording, a
  // constant input's storage is shared and a tape value is copied.
  Tensor NewView(int i, const Shape& shape);

  void SaveDouble(double v);
  void SaveInt(int64_t v);
  void SaveArray(const std::vector<int64_t>& values);
  template <typename T>
  void SaveObject(std::shared_ptr<const T> object) {
    if (!record_) return;
    saved_object_ = object.get();
    Tape::Get().Pin(std::move(object));
  }
  void SetFlags(uint8_t flags) { flags_ = flags; }  // NodeFlag bits

  // Records `out` (from NewOutput, or a tape alias) as this op's result and
  // returns it as a tape tensor; when not recording, returns `out` as is.
  Tensor Finish(Tensor out, BackwardFn backward);

 private:
  void Init();
  const char* name_;
  absl::InlinedVector<const Tensor*, 4> inputs_;
  absl::InlinedVector<Node*, 4> nodes_;  // inputs' tape nodes (null: constant)
  DType dtype_ = kFloat64;
  bool record_ = false;
  uint8_t flags_ = 0;
  double saved_d_[4];
  int64_t saved_i_[6];
  int num_d_ = 0, num_i_ = 0;
  const void* saved_object_ = nullptr;
  int64_t saved_object_size_ = 0;
};

}  // namespace flowtape

// ---- elementwise ops in a few lines ----
// (Their loops vectorise under GCC -O2: autodiff/kernels.h.)
FLOWTAPE_VECTORIZE_BEGIN
namespace flowtape {

// y = f(x) elementwise; f is a generic lambda called with float or double.
// `saved` values are read back by the rule with ctx.saved_double(k).
template <typename F>
Tensor MapUnary(const char* name, const Tensor& x, BackwardFn backward, F f,
                std::initializer_list<double> saved = {}) {
  Op op(name, {x});
  Tensor out = op.NewOutput(x.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* __restrict px = x.data<T>();
    T* __restrict po = out.mutable_data<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i)
      po[i] = static_cast<T>(f(px[i]));
  });
  for (double v : saved) op.SaveDouble(v);
  return op.Finish(out, backward);
}

// y = f(X) with X the values of x as an Eigen array (vectorised math:
// [](const auto& a) { return a.exp(); }).
template <typename F>
Tensor MapArray(const char* name, const Tensor& x, BackwardFn backward, F f) {
  Op op(name, {x});
  Tensor out = op.NewOutput(x.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    Eigen::Map<const Array> in(x.data<T>(), x.numel());
    Eigen::Map<Array>(out.mutable_data<T>(), x.numel()) = f(in);
  });
  return op.Finish(out, backward);
}

// y = f(a, b) elementwise with NumPy broadcasting; f as for MapUnary.
template <typename F>
Tensor MapBinary(const char* name, const Tensor& a, const Tensor& b,
                 BackwardFn backward, F f, uint8_t flags = 0) {
  Op op(name, {a, b});
  Shape os = BroadcastShapes(name, a.shape(), b.shape());
  Tensor out = op.NewOutput(os);
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    internal::BroadcastBinary(
        a.data<T>(), a.shape(), b.data<T>(), b.shape(), out.mutable_data<T>(),
        os, [&f](T x, T y) { return static_cast<T>(f(x, y)); });
  });
  op.SetFlags(flags);
  return op.Finish(out, backward);
}

}  // namespace flowtape
FLOWTAPE_VECTORIZE_END

#endif  // FLOWTAPE_AUTODIFF_OP_KIT_H_
