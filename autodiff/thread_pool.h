// Intra-op parallelism: a process-wide pool of worker threads that large
// kernels (GEMMs, convolutions) spread fixed chunks of their work over.
//
//   SetIntraOpThreads(k)   use k threads per large kernel (the caller and
//                          k - 1 workers); 1 turns it off. The default is
//                          $FLOWTAPE_INTRA_OP_THREADS, else 1.
//   ParallelChunks(c, f)   runs f(0), ..., f(c - 1), each exactly once, and
//                          returns when all have run.
//
// Design for shared, noisy machines: the caller takes chunks from the same
// counter as the workers, so a worker that is slow to wake (a loaded core)
// costs nothing but the chunks it actually claimed; workers sleep on a
// condition variable between jobs (no busy-waiting). A call made while the
// pool is busy (another thread's kernel, or a nested call) runs inline.
// Kernels choose their chunking from the problem size only, never from the
// thread count, so results are bitwise identical for every thread count.
#ifndef FLOWTAPE_AUTODIFF_THREAD_POOL_H_
#define FLOWTAPE_AUTODIFF_THREAD_POOL_H_

#include <cstdint>
#include <functional>

namespace flowtape {

void SetIntraOpThreads(int threads);  // >= 1
int IntraOpThreads();

namespace internal {
void ParallelChunks(int64_t chunks, const std::function<void(int64_t)>& f);
}  // namespace internal

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_THREAD_POOL_H_
