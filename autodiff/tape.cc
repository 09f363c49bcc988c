#include "autodiff/tape.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "autodiff/check.h"

namespace flowtape {
namespace {
constexpr size_t kBlockBytes = size_t{1} << 20;  // 1 MiB arena blocks
}

Tensor OpContext::in(int i) const { return Tensor::FromNode(node->inputs[i]); }
Tensor OpContext::out() const { return Tensor::FromNode(node); }
int OpContext::num_inputs() const { return node->num_inputs; }
const double* OpContext::aux() const { return node->aux; }
const int64_t* OpContext::iaux() const { return node->iaux; }

Tape& Tape::Get() {
  static thread_local Tape tape;
  return tape;
}

Tape::Tape() {
  static std::atomic<uint64_t> next_uid{1};
  uid_ = next_uid.fetch_add(1);
  FT_CHECK(uid_ < (uint64_t{1} << (64 - kSerialBits)),
           "tape: more than 2^24 threads made a tape; tape ids overflow");
  next_serial_ = (uid_ << kSerialBits) + 1;
  nodes_.reserve(1024);
}

void* Tape::Allocate(size_t bytes) {
  bytes = (bytes + 63) & ~size_t{63};
  if (block_ < blocks_.size() && offset_ + bytes <= blocks_[block_].size) {
    void* p = blocks_[block_].mem.get() + offset_;
    offset_ += bytes;
    return p;
  }
  // Move on to the next kept block if it fits, else insert a fresh one there.
  size_t next = blocks_.empty() ? 0 : block_ + 1;
  if (next >= blocks_.size() || blocks_[next].size < bytes) {
    size_t size = std::max(kBlockBytes, bytes);
    Block b{std::unique_ptr<char, void (*)(void*)>(
                static_cast<char*>(std::aligned_alloc(64, size)), std::free),
            size};
    FT_CHECK(b.mem != nullptr, "tape: out of memory (", size, " bytes)");
    blocks_.insert(blocks_.begin() + next, std::move(b));
  }
  block_ = next;
  offset_ = bytes;
  return blocks_[block_].mem.get();
}

Tape::Mark Tape::GetMark() const {
  return Mark{block_, offset_, nodes_.size(), pinned_.size()};
}

void Tape::RewindTo(const Mark& mark) {
  FT_CHECK(mark.nodes <= nodes_.size(), "tape: rewind past the current end");
  block_ = mark.block;
  offset_ = mark.offset;
  nodes_.resize(mark.nodes);
  pinned_.resize(mark.pinned);
}

size_t Tape::bytes_in_use() const {
  size_t n = 0;
  for (size_t i = 0; i < block_ && i < blocks_.size(); ++i)
    n += blocks_[i].size;
  return n + offset_;
}

size_t Tape::bytes_reserved() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

bool Tape::Owns(const Node* n, uint64_t serial) const {
  return n != nullptr && (serial >> kSerialBits) == uid_ && n->id >= 0 &&
         n->id < num_nodes() && nodes_[n->id] == n && n->serial == serial;
}

Node* Tape::NewNode(const char* op, const Shape& shape, double* value,
                    std::initializer_list<Node*> inputs, BackwardFn backward,
                    const OpAux& aux) {
  Node* n = static_cast<Node*>(Allocate(sizeof(Node)));
  n->op = op;
  n->shape = shape;
  n->value = value;
  n->num_inputs = static_cast<int>(inputs.size());
  n->inputs = static_cast<Node**>(Allocate(sizeof(Node*) * inputs.size()));
  n->requires_grad = false;
  int k = 0;
  for (Node* in : inputs) {
    n->inputs[k++] = in;
    n->requires_grad = n->requires_grad || in->requires_grad;
  }
  n->backward = backward;
  n->id = static_cast<int64_t>(nodes_.size());
  n->serial = next_serial_++;
  FT_CHECK((n->serial >> kSerialBits) == uid_,
           "tape: 2^40 nodes recorded on this thread's tape; node serials "
           "overflow (stale tensors could no longer be detected)");
  n->leaf_storage = nullptr;
  FT_CHECK(aux.d.size() <= 4 && aux.i.size() <= 8, op, ": too many aux values");
  std::copy(aux.d.begin(), aux.d.end(), n->aux);
  std::copy(aux.i.begin(), aux.i.end(), n->iaux);
  n->flags = aux.flags;
  nodes_.push_back(n);
  return n;
}

Node* Tape::NewLeaf(const Shape& shape, double* value,
                    internal::Storage* storage, bool requires_grad) {
  Node* n = NewNode("leaf", shape, value, {}, nullptr, {});
  n->requires_grad = requires_grad;
  n->leaf_storage = requires_grad ? storage : nullptr;
  return n;
}

namespace internal {

namespace {
const Tensor& Deref(const Tensor* t) { return *t; }
const Tensor& Deref(const Tensor& t) { return t; }

// Marks `out` (a constant) unrecorded if an input that it was computed from
// needed grads or was itself unrecorded (see Storage::unrecorded).
template <typename Inputs>
void MarkUnrecorded(const Tensor& out, const Inputs& inputs) {
  Storage* s = out.storage().get();
  if (s == nullptr || s->unrecorded) return;
  for (const auto& in : inputs) {
    const Tensor& t = Deref(in);
    if (!t.defined()) continue;
    const Storage* ts = t.storage().get();
    if (!t.is_constant() ||
        (ts != nullptr && (ts->requires_grad || ts->unrecorded))) {
      s->unrecorded = true;
      return;
    }
  }
}
}  // namespace

bool ShouldRecord(std::initializer_list<const Tensor*> inputs) {
  if (!Tape::Get().grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

Tensor NewOutput(const Shape& shape, bool record) {
  if (!record) return Tensor::Empty(shape);
  double* v = static_cast<double*>(Tape::Get().Allocate(
      sizeof(double) * std::max<int64_t>(shape.numel(), 1)));
  return Tensor::FromArena(shape, v);
}

Tensor Record(Tensor out, bool record, const char* name,
              std::initializer_list<const Tensor*> inputs, BackwardFn backward,
              const OpAux& aux) {
  if (!record) {
    MarkUnrecorded(out, inputs);
    return out;
  }
  FT_CHECK(out.is_constant() && out.storage() == nullptr, name,
           ": output was not made by NewOutput(shape, record=true)");
  // Inputs get their nodes (new leaves for parameters and constants) before
  // the output node, so tape order stays topological.
  Node* in[8];
  FT_CHECK(inputs.size() <= 8, name, ": too many inputs");
  int k = 0;
  for (const Tensor* t : inputs) in[k++] = t->NodeForOp(/*materialize=*/true);
  Node* n;
  switch (k) {
    case 1:
      n = Tape::Get().NewNode(name, out.shape(),
                              const_cast<double*>(out.data()), {in[0]},
                              backward, aux);
      break;
    case 2:
      n = Tape::Get().NewNode(name, out.shape(),
                              const_cast<double*>(out.data()), {in[0], in[1]},
                              backward, aux);
      break;
    case 3:
      n = Tape::Get().NewNode(name, out.shape(),
                              const_cast<double*>(out.data()),
                              {in[0], in[1], in[2]}, backward, aux);
      break;
    default:
      FT_CHECK(false, name, ": Record supports 1-3 inputs; use RecordN");
  }
  return Tensor::FromNode(n);
}

Tensor RecordN(Tensor out, bool record, const char* name,
               const std::vector<Tensor>& inputs, BackwardFn backward,
               const OpAux& aux) {
  if (!record) {
    MarkUnrecorded(out, inputs);
    return out;
  }
  Tape& tape = Tape::Get();
  std::vector<Node*> in;
  in.reserve(inputs.size());
  for (const Tensor& t : inputs) in.push_back(t.NodeForOp(true));
  Node* n = tape.NewNode(name, out.shape(), const_cast<double*>(out.data()), {},
                         backward, aux);
  n->num_inputs = static_cast<int>(in.size());
  n->inputs = static_cast<Node**>(tape.Allocate(sizeof(Node*) * in.size()));
  for (size_t i = 0; i < in.size(); ++i) {
    n->inputs[i] = in[i];
    n->requires_grad = n->requires_grad || in[i]->requires_grad;
  }
  return Tensor::FromNode(n);
}

}  // namespace internal
}  // namespace flowtape
