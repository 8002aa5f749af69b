// Intra-op parallelism of the CPU backend: each CPU execution context has a thread count, and
// the kernels of its calls split their work over that many threads: the GEMM wrapper
// (nn_blas.cpp) over the context's own pool, in column or row strips of one BLAS call, and
// oneDNN's convolution (onednn_conv_library.cpp) over OpenMP, with as many threads as the pool.
// OpenBLAS itself is kept at one thread (nn_blas.cpp), so the process runs at most the contexts'
// thread counts added up: threads never multiply, however many contexts run at once.
//
// The default pool size is the CPUs this process may run on divided by the number of live CPU
// contexts (at least 1), worked out again at each call, so N contexts running at once on C cores
// use about C threads in all.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::cpu {

// Another thread team that pools hand their jobs to once it is installed: the OpenMP team oneDNN's
// primitives run on (libkiln_cpu_onednn.so installs it when it loads). Two teams on the same cores
// take turns badly: while a convolution runs on OpenMP's threads, the pool's worker polls for its
// next job (and OpenMP's while the pool runs a fused activation), so three threads want two cores
// at every layer; MobileNetV2 at batch 1 ran no faster on 2 threads than on 1 that way. With one
// team every parallel step of a call runs on the same threads. run(count, threads, body, arg)
// calls body(arg, i) once for every i in [0, count) on at most `threads` threads, the caller one
// of them, and returns when all have returned; body must not throw.
using SharedTeamRun = void (*)(size_t count, int threads, void (*body)(void* arg, size_t index), void* arg);
// Installs `run` for every pool of the process (null: the pools' own workers again). Ignored in
// ThreadSanitizer builds, which do not see OpenMP's synchronisation.
void install_shared_team(SharedTeamRun run);
// The installed team, or null.
SharedTeamRun shared_team();

// A set of worker threads plus the calling thread, or the shared team (above) when one is
// installed: then the pool's own workers are never started. parallel_for calls come from one
// thread at a time (the context's); the pool is not re-entrant (a task must not call parallel_for).
// Between jobs a worker polls for the next one for a short while (kSpin) before it sleeps, and the
// caller polls for the workers to finish before it sleeps: a network's layers come back to back,
// and a sleeping thread takes tens of microseconds to wake, more than many layers take (MobileNetV2
// on 2 threads ran slower than on 1 with sleeping workers). The polls are bounded, so a pool on
// cores shared with other busy processes yields them soon.
class ThreadPool {
 public:
  // `threads` >= 1 in all: threads - 1 workers (started at the first job that needs them), the
  // caller is the last one.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  // Runs task(i) for every i in [0, count), spread over the pool and the calling thread; returns
  // when all have finished. When tasks throw, the first exception is rethrown after all finished.
  void parallel_for(size_t count, const std::function<void(size_t)>& task);

 private:
  void work();
  // Takes and runs task indices of the current job until none is left.
  void drain();
  // parallel_for on the shared team.
  void run_on_team(SharedTeamRun team, size_t count, const std::function<void(size_t)>& task);

  int threads_;

  // How long a waiting thread polls before it sleeps.
  static constexpr std::chrono::microseconds kSpin{100};

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  // Mirrors of generation_ and running_ (written under mutex_) that waiting threads poll.
  std::atomic<size_t> published_generation_{0};
  std::atomic<size_t> published_running_{0};
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(size_t)>* task_ = nullptr;  // guarded by mutex_
  size_t count_ = 0;
  size_t next_ = 0;
  size_t running_ = 0;      // workers inside the current job
  size_t generation_ = 0;   // bumped per job, so a worker joins each job once
  bool stopping_ = false;
  std::exception_ptr error_;
};

// The pool the kernels running on this thread may use, or null (run serially): set by the CPU
// context for the duration of a call (IntraOpScope).
ThreadPool* current_thread_pool();
// current_thread_pool()'s size, 1 when there is none.
int current_intra_op_threads();

// Runs fn(begin, end) over [0, total) in at most current_intra_op_threads() contiguous chunks of
// at least `grain` items each (one chunk on the calling thread when total < 2 * grain or there is
// no pool): for loops whose items cost about the same.
template <typename Fn>
void parallel_chunks(int64_t total, int64_t grain, Fn&& fn) {
  if (total <= 0) return;
  ThreadPool* pool = current_thread_pool();
  const int64_t by_size = grain > 0 ? total / grain : total;
  const int64_t chunks = pool ? std::min<int64_t>(pool->size(), by_size) : 1;
  if (chunks <= 1) {
    fn(int64_t{0}, total);
    return;
  }
  pool->parallel_for(static_cast<size_t>(chunks), [&](size_t c) {
    const auto chunk = static_cast<int64_t>(c);
    fn(total * chunk / chunks, total * (chunk + 1) / chunks);
  });
}

// Makes `pool` the current one on this thread until destroyed (restores the previous one). Kernels
// on OpenMP (oneDNN's convolution) set their thread count from it (onednn_conv_library.cpp).
class IntraOpScope {
 public:
  explicit IntraOpScope(ThreadPool* pool);
  ~IntraOpScope();
  IntraOpScope(const IntraOpScope&) = delete;
  IntraOpScope& operator=(const IntraOpScope&) = delete;

 private:
  ThreadPool* previous_;
};

// Whether a context of several threads runs its next call on all of them or on its calling thread
// alone. On cores shared with other busy processes, a thread that reaches the end of a parallel
// step waits for a partner the scheduler has put aside, for a time slice or more, at every step:
// MobileNetV2 took 30 ms on two such threads and 4 ms on one. So the context times its calls both
// ways and runs the faster, trying the other way again every kExplore-th call (load comes and goes).
// The first call each way is not counted (it builds the layers' primitives for that thread count).
// Only a count kiln guessed is second-guessed so: a count the user set is theirs to keep (a
// fixed choice always says all threads and ignores its timings).
class ThreadCountChoice {
 public:
  // adaptive: the context runs the default thread count (the user set none).
  explicit ThreadCountChoice(bool adaptive = true) : adaptive_(adaptive) {}

  bool next_uses_all_threads();
  void record(bool all_threads, double milliseconds);

  static constexpr uint64_t kExplore = 32;

 private:
  bool adaptive_;
  double average_[2] = {0.0, 0.0};  // milliseconds per call: [0] one thread, [1] all
  int samples_[2] = {0, 0};
  uint64_t calls_ = 0;
};

// The CPUs this process may run on (its affinity mask; std::thread::hardware_concurrency when
// unknown), at least 1.
int available_cpus();

// Counts the live CPU execution contexts for the default thread count: one LiveCpuContext per
// context, for its lifetime.
class LiveCpuContext {
 public:
  LiveCpuContext();
  ~LiveCpuContext();
  LiveCpuContext(const LiveCpuContext&) = delete;
  LiveCpuContext& operator=(const LiveCpuContext&) = delete;
};

// available_cpus() / live CPU contexts, at least 1: the thread count of a context that was not
// given one.
int default_intra_op_threads();

}  // namespace kiln::cpu
