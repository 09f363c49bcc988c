#include "autodiff/tensor.h"

#include <algorithm>
#include <atomic>
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

size_t BufferBytes(int64_t n, DType dtype) {
  return ((std::max<int64_t>(n, 1) * DTypeSize(dtype) + 63) / 64) * 64;
}

void* AllocateBuffer(int64_t n, DType dtype) {
  const size_t bytes = BufferBytes(n, dtype);
  BufferCache* cache = BufferCache::Get();
  void* p = cache != nullptr ? cache->Take(bytes) : nullptr;
  if (p == nullptr) p = std::aligned_alloc(64, bytes);
  FT_CHECK(p != nullptr, "tensor: out of memory allocating ", bytes, " bytes");
  return p;
}

void FreeBuffer(void* p, int64_t n, DType dtype) {
  BufferCache* cache = BufferCache::Get();
  if (cache == nullptr || !cache->Give(p, BufferBytes(n, dtype))) std::free(p);
}

std::atomic<uint64_t> next_storage_id{1};

}  // namespace

Storage::Storage(int64_t n, DType dt)
    : data(AllocateBuffer(n, dt)),
      size(n),
      dtype(dt),
      id(next_storage_id.fetch_add(1, std::memory_order_relaxed)) {}

Storage::~Storage() { FreeBuffer(data, size, dtype); }

void Storage::ConvertTo(DType to) {
  if (to == dtype) return;
  void* fresh = AllocateBuffer(size, to);
  if (to == kFloat32) {
    const double* src = static_cast<const double*>(data);
    float* dst = static_cast<float*>(fresh);
    for (int64_t i = 0; i < size; ++i) dst[i] = static_cast<float>(src[i]);
  } else {
    const float* src = static_cast<const float*>(data);
    double* dst = static_cast<double*>(fresh);
    for (int64_t i = 0; i < size; ++i) dst[i] = src[i];
  }
  FreeBuffer(data, size, dtype);
  data = fresh;
  dtype = to;
  // A new id: leaves that tapes cached for the old values are not reused.
  id = next_storage_id.fetch_add(1, std::memory_order_relaxed);
  grad.reset();
}

}  // namespace internal

namespace {
// Fills a fresh constant from a double-valued generator.
template <typename F>
Tensor Generate(const Shape& shape, DType dtype, F next) {
  Tensor t = Tensor::Empty(shape, dtype);
  VisitDType(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.mutable_data<T>();
    for (int64_t i = 0, n = t.numel(); i < n; ++i)
      p[i] = static_cast<T>(next(i));
  });
  return t;
}
}  // namespace

Tensor Tensor::Empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.storage_ = std::make_shared<internal::Storage>(shape.numel(), dtype);
  return t;
}

Tensor Tensor::Full(const Shape& shape, double value, DType dtype) {
  return Generate(shape, dtype, [value](int64_t) { return value; });
}
Tensor Tensor::Zeros(const Shape& shape, DType dtype) {
  return Full(shape, 0.0, dtype);
}
Tensor Tensor::Ones(const Shape& shape, DType dtype) {
  return Full(shape, 1.0, dtype);
}
Tensor Tensor::UnitColumn(int64_t rows, int64_t cols, int64_t j, DType dtype) {
  FT_CHECK(rows >= 0 && j >= 0 && j < cols, "unit_column: column ", j, " of [",
           rows, ", ", cols, "]");
  Tensor e = Zeros({rows, cols}, dtype);
  VisitDType(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = e.mutable_data<T>();
    for (int64_t r = 0; r < rows; ++r) p[r * cols + j] = T{1};
  });
  e.storage_->unit_column = j;
  e.storage_->unit_width = cols;
  return e;
}
Tensor Tensor::Scalar(double value, DType dtype) {
  return Full(Shape{}, value, dtype);
}

Tensor Tensor::FromVector(const Shape& shape, const std::vector<double>& v,
                          DType dtype) {
  FT_CHECK(static_cast<int64_t>(v.size()) == shape.numel(),
           "from_vector: ", v.size(), " values for shape ", shape.ToString());
  return Generate(shape, dtype, [&v](int64_t i) { return v[i]; });
}

Tensor Tensor::Eye(int64_t n, DType dtype) {
  return Generate(Shape{n, n}, dtype,
                  [n](int64_t i) { return i / n == i % n ? 1.0 : 0.0; });
}

Tensor Tensor::Randn(const Shape& shape, Rng& rng, DType dtype) {
  return Generate(shape, dtype, [&rng](int64_t) { return rng.Normal(); });
}

Tensor Tensor::Rand(const Shape& shape, Rng& rng, DType dtype) {
  return Generate(shape, dtype, [&rng](int64_t) { return rng.Uniform(); });
}

Tensor Tensor::Rademacher(const Shape& shape, Rng& rng, DType dtype) {
  return Generate(shape, dtype, [&rng](int64_t) { return rng.Rademacher(); });
}

DType Tensor::dtype() const {
  if (node_ != nullptr) return node()->dtype;
  if (storage_ != nullptr) return storage_->dtype;
  return dtype_;
}

const void* Tensor::TypedData(DType want, const char* what) const {
  const void* p;
  DType have;
  if (node_ != nullptr) {
    const Node* n = node();  // validates
    p = n->value;
    have = n->dtype;
  } else if (storage_ != nullptr) {
    p = storage_->data;
    have = storage_->dtype;
  } else {
    p = data_;
    have = dtype_;
  }
  FT_CHECK(have == want, what, "<", DTypeName(want), ">: tensor ",
           shape_.ToString(), " is ", DTypeName(have));
  return p;
}

const void* Tensor::raw_data() const {
  if (node_ != nullptr) return node()->value;  // validates
  if (storage_ != nullptr) return storage_->data;
  return data_;
}

void* Tensor::raw_mutable_data() {
  FT_CHECK(node_ == nullptr, "mutable_data: tensor is a tape value (op '",
           node_ ? node()->op : "", "'); only constants are writable");
  FT_CHECK(defined(), "mutable_data: undefined tensor");
  if (storage_ == nullptr) return data_;
  // Its zeros are no longer known (read first: threads that share a
  // parameter only read this field).
  if (storage_->unit_column >= 0) storage_->unit_column = -1;
  return storage_->data;
}

double Tensor::operator[](int64_t i) const {
  FT_CHECK(i >= 0 && i < numel(), "tensor[", i, "]: out of range for ",
           shape_.ToString());
  return dtype() == kFloat32 ? static_cast<const float*>(raw_data())[i]
                             : static_cast<const double*>(raw_data())[i];
}

double Tensor::item() const {
  FT_CHECK(numel() == 1, "item: tensor of shape ", shape_.ToString(), " has ",
           numel(), " elements, want 1");
  return (*this)[0];
}

std::vector<double> Tensor::ToVector() const {
  std::vector<double> out(numel());
  VisitDType(dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* p = static_cast<const T*>(raw_data());
    std::copy(p, p + numel(), out.begin());
  });
  return out;
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
  return g;
}

void Tensor::ZeroGrad() {
  if (storage_ != nullptr) storage_->grad.reset();
}

Tensor Tensor::Detach() const {
  FT_CHECK(defined(), "detach: undefined tensor");
  Tensor t = Empty(shape_, dtype());
  std::memcpy(t.storage_->data, raw_data(), DTypeSize(dtype()) * numel());
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
  if (!storage_->requires_grad && !materialize) return nullptr;
  return Tape::Get().LeafFor(storage_, shape_);
}

Tensor Tensor::FromArena(const Shape& shape, DType dtype, void* data) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.data_ = data;
  return t;
}

Tensor Tensor::Alias(const Tensor& base, const Shape& shape) {
  FT_CHECK(base.numel() == shape.numel(), "alias: ", base.shape_.ToString(),
           " -> ", shape.ToString());
  FT_CHECK(base.storage_ != nullptr, "alias: ", base.shape_.ToString(),
           " is not a constant");
  Tensor t;
  t.shape_ = shape;
  t.storage_ = base.storage_;
  return t;
}

Tensor Tensor::FromNode(Node* node) {
  Tensor t;
  t.shape_ = node->shape;
  t.node_ = node;
  t.serial_ = node->serial;
  return t;
}

}  // namespace flowtape
