#include "autodiff/op_kit.h"

#include <algorithm>
#include <cstring>

namespace flowtape {

bool OpContext::needs_grad(int i) const {
  const Node* in = node_->inputs[i];
  if (!in->requires_grad) return false;
  if (sweep_ == nullptr || sweep_->reach == nullptr) return true;
  return in->id >= sweep_->min_id && sweep_->reach[in->id - sweep_->min_id];
}

bool OpContext::wanted_columns(int i, int64_t* begin, int64_t* width) const {
  if (sweep_ == nullptr || node_->inputs[i]->id != sweep_->column_id)
    return false;
  *begin = sweep_->column_begin;
  *width = sweep_->column_width;
  return true;
}

double OpContext::saved_double(int k) const {
  FT_CHECK(k >= 0 && k < node_->num_saved_doubles, node_->op, ": saved double ",
           k, " of ", node_->num_saved_doubles);
  return node_->saved_doubles[k];
}

int64_t OpContext::saved_int(int k) const {
  FT_CHECK(k >= 0 && k < node_->num_saved_ints, node_->op, ": saved int ", k,
           " of ", node_->num_saved_ints);
  return node_->saved_ints[k];
}

std::vector<int64_t> OpContext::saved_array() const {
  const auto* p = static_cast<const int64_t*>(node_->saved_object);
  return std::vector<int64_t>(p, p + node_->saved_object_size);
}

void OpContext::CheckDType(DType want) const {
  FT_CHECK(node_->dtype == want, node_->op, ": backward reads ",
           DTypeName(want), " values of a ", DTypeName(node_->dtype), " op");
}

Op::Op(const char* name,
       std::initializer_list<std::reference_wrapper<const Tensor>> inputs)
    : name_(name) {
  for (const Tensor& t : inputs) inputs_.push_back(&t);
  Init();
}

Op::Op(const char* name, const std::vector<Tensor>& inputs) : name_(name) {
  for (const Tensor& t : inputs) inputs_.push_back(&t);
  Init();
}

void Op::Init() {
  const Tensor* first = nullptr;
  bool any_grad = false, seen_undefined = false;
  for (const Tensor* t : inputs_) {
    if (!t->defined()) {
      seen_undefined = true;
      continue;
    }
    FT_CHECK(!seen_undefined, name_,
             ": only trailing inputs may be undefined (optional ones)");
    // One validation per input: its node (tape value) or storage (constant).
    Node* node = t->node_ != nullptr ? t->node() : nullptr;
    FT_CHECK(node != nullptr || t->storage_ != nullptr, name_, ": input ",
             inputs_.size(), " is a buffer that was never recorded");
    const DType d = node != nullptr ? node->dtype : t->storage_->dtype;
    nodes_.push_back(node);
    if (first == nullptr) {
      first = t;
      dtype_ = d;
    } else {
      FT_CHECK(d == dtype_, name_, ": mixed dtypes ", DTypeName(dtype_), " ",
               first->shape().ToString(), " and ", DTypeName(d), " ",
               t->shape().ToString(), "; convert one with Cast");
    }
    any_grad = any_grad || (node != nullptr ? node->requires_grad
                                            : t->storage_->requires_grad);
  }
  FT_CHECK(first != nullptr || inputs_.empty(), name_,
           ": every input is undefined");
  record_ = any_grad && Tape::Get().grad_enabled();
}

Tensor Op::NewOutput(const Shape& shape, DType dtype) {
  if (!record_) return Tensor::Empty(shape, dtype);
  void* v = Tape::Get().Allocate(DTypeSize(dtype) *
                                 std::max<int64_t>(shape.numel(), 1));
  return Tensor::FromArena(shape, dtype, v);
}

Tensor Op::NewView(int i, const Shape& shape) {
  FT_CHECK(i >= 0 && i < static_cast<int>(nodes_.size()), name_,
           ": a view of input ", i, " of ", nodes_.size());
  const Tensor& x = *inputs_[i];
  FT_CHECK(shape.numel() == x.numel(), name_, ": ", x.shape().ToString(),
           " cannot be viewed as ", shape.ToString());
  // Not recording: a constant's storage is shared; a tape value (its arena
  // memory is reused after a reset) is copied first.
  if (!record_) return Tensor::Alias(x.is_constant() ? x : x.Detach(), shape);
  const Node* n = nodes_[i];
  return Tensor::FromArena(shape, n != nullptr ? n->dtype : x.storage_->dtype,
                           n != nullptr ? n->value : x.storage_->data);
}

void Op::SaveDouble(double v) {
  FT_CHECK(num_d_ < 4, name_, ": more than 4 saved doubles");
  saved_d_[num_d_++] = v;
}

void Op::SaveInt(int64_t v) {
  FT_CHECK(num_i_ < 6, name_, ": more than 6 saved ints");
  saved_i_[num_i_++] = v;
}

void Op::SaveArray(const std::vector<int64_t>& values) {
  if (!record_) return;
  auto* p = static_cast<int64_t*>(Tape::Get().Allocate(
      sizeof(int64_t) * std::max<size_t>(values.size(), 1)));
  std::copy(values.begin(), values.end(), p);
  saved_object_ = p;
  saved_object_size_ = static_cast<int64_t>(values.size());
}

namespace {
// Marks `out` (a constant) unrecorded if an input that it was computed from
// needed grads or was itself unrecorded (see Storage::unrecorded). A view
// of a constant input (Op::NewView) is that input's storage: left as is.
void MarkUnrecorded(const Tensor& out,
                    const absl::InlinedVector<const Tensor*, 4>& inputs) {
  internal::Storage* s = out.storage().get();
  if (s == nullptr || s->unrecorded) return;
  for (const Tensor* t : inputs)
    if (t->defined() && t->storage().get() == s) return;
  for (const Tensor* t : inputs) {
    if (!t->defined()) continue;
    const internal::Storage* ts = t->storage().get();
    if (!t->is_constant() ||
        (ts != nullptr && (ts->requires_grad || ts->unrecorded))) {
      s->unrecorded = true;
      return;
    }
  }
}
}  // namespace

Tensor Op::Finish(Tensor out, BackwardFn backward) {
  if (!record_) {
    MarkUnrecorded(out, inputs_);
    return out;
  }
  FT_CHECK(out.is_constant() && out.storage() == nullptr && out.defined(),
           name_, ": output was not made by Op::NewOutput");
  // Inputs get their nodes (leaves for parameters and constants) before the
  // output node, so tape order stays topological.
  absl::InlinedVector<Node*, 4> in;
  for (size_t i = 0; i < nodes_.size(); ++i)
    in.push_back(nodes_[i] != nullptr
                     ? nodes_[i]
                     : inputs_[i]->NodeForOp(/*materialize=*/true));
  Tape& tape = Tape::Get();
  Node* n = tape.NewNode(name_, out.shape(), out.dtype(),
                         const_cast<void*>(out.raw_data()), in.data(),
                         static_cast<int>(in.size()), backward);
  n->flags = flags_;
  std::copy(saved_d_, saved_d_ + num_d_, n->saved_doubles);
  std::copy(saved_i_, saved_i_ + num_i_, n->saved_ints);
  n->num_saved_doubles = num_d_;
  n->num_saved_ints = num_i_;
  n->saved_object = saved_object_;
  n->saved_object_size = saved_object_size_;
  return Tensor::FromNode(n);
}

}  // namespace flowtape
