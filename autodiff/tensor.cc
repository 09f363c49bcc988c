#include "autodiff/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "autodiff/check.h"
#include "autodiff/tape.h"

namespace flowtape {
namespace internal {
namespace {

// Per-thread cache of freed tensor buffers, reused by exact (64-byte
// rounded) size. Training steps allocate the same temporaries every step;
// recycling them avoids malloc and, for large buffers, the page faults of
// fresh mmap'ed memory. Bounded, most recently freed first.
class BufferCache {
 public:
  static constexpr size_t kMaxEntries = 64;
  static constexpr size_t kMaxBytes = size_t{64} << 20;

  ~BufferCache() {
    for (const Entry& e : entries_) std::free(e.ptr);
    dead_ = true;
  }
  // The calling thread's cache, or nullptr while the thread is exiting.
  static BufferCache* Get() {
    if (dead_) return nullptr;
    static thread_local BufferCache cache;
    return &cache;
  }
  void* Take(size_t bytes) {
    for (size_t i = entries_.size(); i-- > 0;) {
      if (entries_[i].bytes != bytes) continue;
      void* p = entries_[i].ptr;
      entries_.erase(entries_.begin() + i);
      total_ -= bytes;
      return p;
    }
    return nullptr;
  }
  bool Give(void* p, size_t bytes) {
#if defined(__SANITIZE_ADDRESS__)
    return false;  // let ASan see every use after free
#endif
    if (bytes > kMaxBytes / 4) return false;
    while (!entries_.empty() &&
           (entries_.size() >= kMaxEntries || total_ + bytes > kMaxBytes)) {
      std::free(entries_.front().ptr);
      total_ -= entries_.front().bytes;
      entries_.erase(entries_.begin());
    }
    entries_.push_back({p, bytes});
    total_ += bytes;
    return true;
  }

 private:
  struct Entry {
    void* ptr;
    size_t bytes;
  };
  std::vector<Entry> entries_;
  size_t total_ = 0;
  static thread_local bool dead_;
};
thread_local bool BufferCache::dead_ = false;

size_t BufferBytes(int64_t n) {
  return ((std::max<int64_t>(n, 1) * sizeof(double) + 63) / 64) * 64;
}

}  // namespace

Storage::Storage(int64_t n) : size(n) {
  const size_t bytes = BufferBytes(n);
  BufferCache* cache = BufferCache::Get();
  void* p = cache != nullptr ? cache->Take(bytes) : nullptr;
  data = static_cast<double*>(p != nullptr ? p : std::aligned_alloc(64, bytes));
  FT_CHECK(data != nullptr, "tensor: out of memory allocating ", bytes,
           " bytes");
}

Storage::~Storage() {
  BufferCache* cache = BufferCache::Get();
  if (cache == nullptr || !cache->Give(data, BufferBytes(size)))
    std::free(data);
}

}  // namespace internal

Tensor Tensor::Empty(const Shape& shape) {
  Tensor t;
  t.shape_ = shape;
  t.storage_ = std::make_shared<internal::Storage>(shape.numel());
  t.data_ = t.storage_->data;
  return t;
}

Tensor Tensor::Full(const Shape& shape, double value) {
  Tensor t = Empty(shape);
  std::fill_n(t.data_, shape.numel(), value);
  return t;
}
Tensor Tensor::Zeros(const Shape& shape) { return Full(shape, 0.0); }
Tensor Tensor::Ones(const Shape& shape) { return Full(shape, 1.0); }
Tensor Tensor::Scalar(double value) { return Full(Shape{}, value); }

Tensor Tensor::FromVector(const Shape& shape, const std::vector<double>& v) {
  FT_CHECK(static_cast<int64_t>(v.size()) == shape.numel(),
           "from_vector: ", v.size(), " values for shape ", shape.ToString());
  Tensor t = Empty(shape);
  std::copy(v.begin(), v.end(), t.data_);
  return t;
}

Tensor Tensor::Eye(int64_t n) {
  Tensor t = Zeros(Shape{n, n});
  for (int64_t i = 0; i < n; ++i) t.data_[i * n + i] = 1.0;
  return t;
}

Tensor Tensor::Randn(const Shape& shape, Rng& rng) {
  Tensor t = Empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_[i] = rng.Normal();
  return t;
}

Tensor Tensor::Rand(const Shape& shape, Rng& rng) {
  Tensor t = Empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_[i] = rng.Uniform();
  return t;
}

Tensor Tensor::Rademacher(const Shape& shape, Rng& rng) {
  Tensor t = Empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data_[i] = rng.Uniform() < 0.5 ? -1.0 : 1.0;
  return t;
}

const double* Tensor::data() const {
  if (node_ != nullptr) node();  // validates
  return data_;
}

double* Tensor::mutable_data() {
  FT_CHECK(node_ == nullptr, "mutable_data: tensor is a tape value (op '",
           node_ ? node()->op : "", "'); only constants are writable");
  FT_CHECK(storage_ != nullptr, "mutable_data: undefined tensor");
  return data_;
}

double Tensor::item() const {
  FT_CHECK(numel() == 1, "item: tensor of shape ", shape_.ToString(), " has ",
           numel(), " elements, want 1");
  return data()[0];
}

std::vector<double> Tensor::ToVector() const {
  const double* d = data();
  return std::vector<double>(d, d + numel());
}

bool Tensor::requires_grad() const {
  if (node_ != nullptr) return node()->requires_grad;
  return storage_ != nullptr && storage_->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool on) {
  FT_CHECK(node_ == nullptr && storage_ != nullptr,
           "set_requires_grad: only a defined constant can be a parameter");
  storage_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  if (storage_ == nullptr || storage_->grad == nullptr) return Tensor();
  Tensor g;
  g.shape_ = shape_;
  g.storage_ = storage_->grad;
  g.data_ = g.storage_->data;
  return g;
}

void Tensor::ZeroGrad() {
  if (storage_ != nullptr) storage_->grad.reset();
}

Tensor Tensor::Detach() const {
  FT_CHECK(defined(), "detach: undefined tensor");
  Tensor t = Empty(shape_);
  std::memcpy(t.data_, data(), sizeof(double) * numel());
  return t;
}

Node* Tensor::node() const {
  if (node_ == nullptr) return nullptr;
  FT_CHECK(Tape::Get().Owns(node_, serial_),
           "stale tensor: its tape was reset or rewound, or it belongs to "
           "another thread's tape");
  return node_;
}

Node* Tensor::NodeForOp(bool materialize) const {
  if (node_ != nullptr) return node();
  FT_CHECK(storage_ != nullptr,
           "op on an undefined tensor (or a buffer that "
           "was never recorded)");
  Tape& tape = Tape::Get();
  internal::Storage* s = storage_.get();
  if (!s->requires_grad && !materialize) return nullptr;
  if (tape.Owns(s->leaf, s->leaf_serial) && s->leaf->shape == shape_ &&
      s->leaf->requires_grad == s->requires_grad)
    return s->leaf;
  tape.Pin(storage_);
  Node* leaf = tape.NewLeaf(shape_, data_, s, s->requires_grad);
  s->leaf = leaf;
  s->leaf_serial = leaf->serial;
  return leaf;
}

Tensor Tensor::FromArena(const Shape& shape, double* data) {
  Tensor t;
  t.shape_ = shape;
  t.data_ = data;
  return t;
}

Tensor Tensor::Alias(const Tensor& base, const Shape& shape) {
  FT_CHECK(base.numel() == shape.numel(), "alias: ", base.shape_.ToString(),
           " -> ", shape.ToString());
  Tensor t;
  t.shape_ = shape;
  t.data_ = const_cast<double*>(base.data());
  t.storage_ = base.storage_;
  return t;
}

Tensor Tensor::FromNode(Node* node) {
  Tensor t;
  t.shape_ = node->shape;
  t.data_ = node->value;
  t.node_ = node;
  t.serial_ = node->serial;
  return t;
}

}  // namespace flowtape
