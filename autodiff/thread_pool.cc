#include "autodiff/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "autodiff/check.h"

namespace flowtape {
namespace {

thread_local bool in_pool_job = false;

int DefaultThreads() {
  const char* env = std::getenv("FLOWTAPE_INTRA_OP_THREADS");
  if (env == nullptr) return 1;
  const int n = std::atoi(env);
  return n >= 1 && n <= 256 ? n : 1;
}

class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool(DefaultThreads());  // lives until exit
    return *pool;
  }

  int threads() const { return threads_.load(std::memory_order_relaxed); }

  void Resize(int threads) {
    FT_CHECK(threads >= 1, "SetIntraOpThreads: want >= 1, got ", threads);
    std::lock_guard<std::mutex> resize(resize_mu_);
    // Wait for a running job to finish before replacing the workers.
    while (busy_.exchange(true, std::memory_order_acquire))
      std::this_thread::yield();
    StopWorkers();
    threads_.store(threads, std::memory_order_relaxed);
    for (int i = 1; i < threads; ++i)
      workers_.emplace_back([this] { WorkerLoop(); });
    busy_.store(false, std::memory_order_release);
  }

  void Run(int64_t chunks, const std::function<void(int64_t)>& f) {
    if (chunks <= 1 || threads() == 1 || in_pool_job ||
        busy_.exchange(true, std::memory_order_acquire)) {
      for (int64_t i = 0; i < chunks; ++i) f(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &f;
      chunks_ = chunks;
      next_.store(0, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      ++generation_;
    }
    wake_.notify_all();
    in_pool_job = true;
    Work(f, chunks);
    in_pool_job = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      finished_.wait(lock, [&] {
        return done_.load(std::memory_order_acquire) == chunks_ && inside_ == 0;
      });
      job_ = nullptr;
    }
    busy_.store(false, std::memory_order_release);
  }

 private:
  explicit Pool(int threads) { Resize(threads); }

  // Claims and runs chunks until none are left.
  void Work(const std::function<void(int64_t)>& f, int64_t chunks) {
    for (;;) {
      const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks) return;
      f(i);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void WorkerLoop() {
    in_pool_job = true;  // a kernel called from a chunk runs inline
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const std::function<void(int64_t)>* f = job_;
      if (f == nullptr) continue;  // woke after the job was done
      const int64_t chunks = chunks_;
      ++inside_;
      lock.unlock();
      Work(*f, chunks);
      lock.lock();
      --inside_;
      finished_.notify_one();
    }
  }

  void StopWorkers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
  }

  std::mutex resize_mu_;
  std::atomic<int> threads_{1};
  std::atomic<bool> busy_{false};
  std::mutex mu_;
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int inside_ = 0;  // workers running the current job
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0}, done_{0};
};

}  // namespace

void SetIntraOpThreads(int threads) { Pool::Get().Resize(threads); }
int IntraOpThreads() { return Pool::Get().threads(); }

namespace internal {
void ParallelChunks(int64_t chunks, const std::function<void(int64_t)>& f) {
  Pool::Get().Run(chunks, f);
}
}  // namespace internal

}  // namespace flowtape
