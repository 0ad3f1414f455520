#include "emulate.hpp"

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/executor.cuh"

namespace hdqnn {
namespace cuda {
namespace {

/// Most emulated threads in one block (each is an OS thread).
constexpr int kMaxEmulatedBlockThreads = 64;

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const long long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation != generation_; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_;
  int arrived_ = 0;
  long long generation_ = 0;
};

struct BlockState {
  Barrier barrier;
  std::vector<double> exchange;  ///< one slot per thread for shuffles (float values are exact in double)
  BlockState(int threads) : barrier(threads), exchange(threads) {}
};

/// The Team of executor.cuh for one emulated thread.
struct HostTeam {
  int thread;
  int rank;
  int size;
  int group;
  int lanes;
  BlockState* block;

  void sync() const { block->barrier.wait(); }
  template <class A>
  A shuffle_xor(A v, int offset) const {
    block->exchange[thread] = double(v);
    sync();
    const A partner = A(block->exchange[thread ^ offset]);
    sync();
    return partner;
  }
};

bool power_of_two(long long x) { return x > 0 && (x & (x - 1)) == 0; }

void check_config(const EmulateCall& call, const EmulateConfig& c) {
  if (call.real_bytes != 4 && call.real_bytes != 8) throw std::invalid_argument("real_bytes must be 4 or 8");
  if (call.meta[gpu::kHVersion] != gpu::kMetaVersion) throw std::invalid_argument("meta has the wrong version");
  if (!power_of_two(c.threads_per_sample)) throw std::invalid_argument("threads_per_sample must be a power of two");
  if (!power_of_two(c.warp)) throw std::invalid_argument("warp must be a power of two");
  if (c.samples_per_block < 1 || c.grid < 1 || call.batch < 1) {
    throw std::invalid_argument("samples_per_block, grid and batch must be >= 1");
  }
  if (c.threads_per_sample * c.samples_per_block > kMaxEmulatedBlockThreads) {
    throw std::invalid_argument("at most " + std::to_string(kMaxEmulatedBlockThreads) + " emulated threads per block");
  }
}

template <class T>
void emulate_typed(const EmulateCall& call, const EmulateConfig& c) {
  const gpu::MetaView meta{call.meta};
  const bool shared_weights = call.task == gpu::kTaskVjp && !meta.per_sample_weights();
  const Index n_weights = meta.n_weights();
  std::vector<T> rows(shared_weights ? size_t(call.batch * n_weights) : 0);

  gpu::ExecArgs<T> args;
  args.meta = call.meta;
  args.angle_val = call.angle_val;
  args.inputs = static_cast<const T*>(call.inputs);
  args.weights = static_cast<const T*>(call.weights);
  args.grad_output = static_cast<const T*>(call.grad_output);
  args.out = static_cast<T*>(call.out);
  args.grad_rows = shared_weights ? rows.data() : static_cast<T*>(call.grad_weights);
  args.bits = call.bits;
  args.batch = call.batch;
  args.task = call.task;
  args.threads_per_sample = c.threads_per_sample;
  args.samples_per_block = c.samples_per_block;
  args.shared_state = c.shared_state ? 1 : 0;
  args.shots = call.shots;
  args.seed = call.seed;
  const Index dim = Index(1) << meta.n_qubits();
  std::vector<Complex<T>> workspace(
      c.shared_state ? 0 : size_t(c.grid * c.samples_per_block * gpu::states_per_sample(call.task) * dim));
  args.workspace = workspace.data();

  const gpu::SmemLayout layout =
      gpu::smem_layout(meta.n_qubits(), meta.n_slots(), meta.n_ops(), call.task, c.shared_state, c.samples_per_block,
                       c.threads_per_sample, c.warp, int(sizeof(T)));
  std::vector<double> smem(size_t((layout.total + sizeof(double) - 1) / sizeof(double)));
  const int threads = c.threads_per_sample * c.samples_per_block;
  for (Index block = 0; block < c.grid; ++block) {
    BlockState state(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const HostTeam team{t, t % c.threads_per_sample, c.threads_per_sample, t / c.threads_per_sample,
                            c.threads_per_sample < c.warp ? c.threads_per_sample : c.warp, &state};
        gpu::execute_block<T, HostTeam>(args, team, reinterpret_cast<unsigned char*>(smem.data()), c.warp, block,
                                        c.grid);
      });
    }
    for (std::thread& th : pool) th.join();
  }
  if (shared_weights) {
    T* out = static_cast<T*>(call.grad_weights);
    for (Index w = 0; w < n_weights; ++w) {
      double s = 0.0;
      for (Index b = 0; b < call.batch; ++b) s += double(rows[size_t(b * n_weights + w)]);
      out[w] = T(s);
    }
  }
}

}  // namespace

void emulate(const EmulateCall& call, const EmulateConfig& config) {
  check_config(call, config);
  if (call.real_bytes == 8) {
    emulate_typed<double>(call, config);
  } else {
    emulate_typed<float>(call, config);
  }
}

}  // namespace cuda
}  // namespace hdqnn
