#include "autodiff/tape.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "autodiff/check.h"

namespace flowtape {
namespace {
constexpr size_t kBlockBytes = size_t{1} << 20;  // 1 MiB arena blocks
}

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
  if (mark.nodes == 0) leaves_.clear();
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

Node* Tape::NewNode(const char* op, const Shape& shape, DType dtype,
                    void* value, Node* const* inputs, int n,
                    BackwardFn backward) {
  Node* node = static_cast<Node*>(Allocate(sizeof(Node)));
  node->op = op;
  node->shape = shape;
  node->dtype = dtype;
  node->flags = 0;
  node->value = value;
  node->num_inputs = n;
  node->inputs =
      n > 0 ? static_cast<Node**>(Allocate(sizeof(Node*) * n)) : nullptr;
  node->requires_grad = false;
  for (int k = 0; k < n; ++k) {
    node->inputs[k] = inputs[k];
    node->requires_grad = node->requires_grad || inputs[k]->requires_grad;
  }
  node->backward = backward;
  node->id = static_cast<int64_t>(nodes_.size());
  node->serial = next_serial_++;
  FT_CHECK((node->serial >> kSerialBits) == uid_,
           "tape: 2^40 nodes recorded on this thread's tape; node serials "
           "overflow (stale tensors could no longer be detected)");
  node->leaf_storage = nullptr;
  node->num_saved_doubles = node->num_saved_ints = 0;
  node->saved_object = nullptr;
  node->saved_object_size = 0;
  nodes_.push_back(node);
  return node;
}

Node* Tape::LeafFor(const std::shared_ptr<internal::Storage>& s,
                    const Shape& shape) {
  auto it = leaves_.find(s->id);
  if (it != leaves_.end()) {
    Node* leaf = it->second.first;
    if (Owns(leaf, it->second.second) && leaf->shape == shape &&
        leaf->requires_grad == s->requires_grad) {
      if (s->unit_column < 0) leaf->flags &= ~kUnitColumnLeaf;  // written to
      return leaf;
    }
  }
  Pin(s);
  Node* leaf = NewNode("leaf", shape, s->dtype, s->data, nullptr, 0, nullptr);
  leaf->requires_grad = s->requires_grad;
  leaf->leaf_storage = s->requires_grad ? s.get() : nullptr;
  if (s->unit_column >= 0) {
    leaf->flags |= kUnitColumnLeaf;
    leaf->saved_ints[0] = s->unit_column;
    leaf->saved_ints[1] = s->unit_width;
  }
  leaves_[s->id] = {leaf, leaf->serial};
  return leaf;
}

}  // namespace flowtape
