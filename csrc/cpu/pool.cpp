#include "pool.hpp"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace hdqnn {
namespace cpu {
namespace {

/// How long an idle worker polls for the next job before it blocks.
constexpr std::chrono::microseconds kSpin(200);

class WorkerPool {
 public:
  void run(int threads, Index n_blocks, BlockBody body, void* ctx) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || threads <= 1) {  // another call owns the pool: run alone
      for (Index b = 0; b < n_blocks; ++b) body(ctx, 0, b);
      return;
    }
    ensure_workers(threads - 1);
    uint64_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = ++generation_;
      job_ = Job{threads, n_blocks, body, ctx};
      next_.store(0);
      open_generation_.store(generation);
      published_.store(generation);
    }
    wake_.notify_all();
    claim_blocks(job_, 0);
    // late workers see the job closed and leave; wait only for those holding a block
    open_generation_.store(0);
    while (active_.load() != 0) std::this_thread::yield();
  }

  /// Replaced in a child process after fork(), where the workers do not exist.
  static WorkerPool*& instance() {
    static WorkerPool* pool = new WorkerPool();  // never destroyed: workers may outlive exit
    return pool;
  }

 private:
  struct Job {
    int threads = 0;
    Index n_blocks = 0;
    BlockBody body = nullptr;
    void* ctx = nullptr;
  };

  void claim_blocks(const Job& job, int worker) {
    for (Index b = next_.fetch_add(1); b < job.n_blocks; b = next_.fetch_add(1)) job.body(job.ctx, worker, b);
  }

  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      const int id = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, id] { worker_loop(id); });
      workers_.back().detach();
    }
  }

  void worker_loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      // Back-to-back calls (a training loop) find the worker awake: poll briefly before sleeping.
      const auto spin_end = std::chrono::steady_clock::now() + kSpin;
      while (published_.load() == seen && std::chrono::steady_clock::now() < spin_end) std::this_thread::yield();
      Job job;
      uint64_t generation;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation = generation_;
        job = job_;
      }
      if (id >= job.threads) continue;
      active_.fetch_add(1);
      if (open_generation_.load() == generation) claim_blocks(job, id);
      active_.fetch_sub(1);
    }
  }

  std::mutex busy_;   ///< held by the call using the pool
  std::mutex mutex_;  ///< guards job_ and generation_
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  Job job_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> published_{0};  ///< generation_, readable without the mutex
  std::atomic<uint64_t> open_generation_{0};
  std::atomic<Index> next_{0};
  std::atomic<int> active_{0};
};

std::atomic<bool> g_openmp_started{false};
std::atomic<bool> g_openmp_lost{false};

/// In a child process after fork() only the forking thread exists: the pool starts over, and
/// OpenMP regions are off for good if the parent had started one (openmp_regions_usable).
void after_fork_in_child() {
  WorkerPool::instance() = new WorkerPool();
  if (g_openmp_started.load()) g_openmp_lost.store(true);
}

// Registered when the module is loaded, so that a fork before the first call is covered too.
[[maybe_unused]] const int g_fork_handler = pthread_atfork(nullptr, nullptr, after_fork_in_child);

}  // namespace

void parallel_blocks(int threads, Index n_blocks, BlockBody body, void* ctx) {
  WorkerPool::instance()->run(threads, n_blocks, body, ctx);
}

bool openmp_regions_usable() { return !g_openmp_lost.load(); }

void note_openmp_region() { g_openmp_started.store(true); }

}  // namespace cpu
}  // namespace hdqnn
