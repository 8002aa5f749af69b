#include "backends/cpu/intra_op_threads.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>

namespace kiln::cpu {
namespace {

thread_local ThreadPool* t_current_pool = nullptr;
std::atomic<int> g_live_contexts{0};
std::atomic<SharedTeamRun> g_shared_team{nullptr};

}  // namespace

void install_shared_team(SharedTeamRun run) {
#if defined(__SANITIZE_THREAD__)
  (void)run;
#else
  g_shared_team.store(run, std::memory_order_release);
#endif
}

SharedTeamRun shared_team() { return g_shared_team.load(std::memory_order_acquire); }

ThreadPool::ThreadPool(int threads) : threads_(std::max(threads, 1)) {}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    ++generation_;  // ends the workers' polls
    published_generation_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::drain() {
  while (true) {
    size_t index;
    const std::function<void(size_t)>* task;
    {
      std::lock_guard lock(mutex_);
      if (next_ >= count_ || task_ == nullptr) return;
      index = next_++;
      task = task_;
    }
    try {
      (*task)(index);
    } catch (...) {
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_ = count_;  // the remaining tasks are skipped
    }
  }
}

namespace {

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls `ready` for up to `limit`; true when it became true.
template <typename Ready>
bool poll_for(std::chrono::microseconds limit, Ready&& ready) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    for (int i = 0; i < 64; ++i) {
      relax();
      if (ready()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
  return true;
}

}  // namespace

void ThreadPool::work() {
  size_t seen = 0;
  while (true) {
    poll_for(kSpin, [&] { return published_generation_.load(std::memory_order_acquire) != seen; });
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      ++running_;
      published_running_.store(running_, std::memory_order_release);
    }
    drain();
    {
      std::lock_guard lock(mutex_);
      --running_;
      published_running_.store(running_, std::memory_order_release);
    }
    done_.notify_all();
  }
}

void ThreadPool::run_on_team(SharedTeamRun team, size_t count, const std::function<void(size_t)>& task) {
  struct Job {
    const std::function<void(size_t)>* task;
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::exception_ptr error;
  } job;
  job.task = &task;
  const auto body = [](void* arg, size_t index) {
    auto& j = *static_cast<Job*>(arg);
    if (j.failed.load(std::memory_order_relaxed)) return;  // the remaining tasks are skipped
    try {
      (*j.task)(index);
    } catch (...) {
      std::lock_guard lock(j.mutex);
      if (!j.error) j.error = std::current_exception();
      j.failed.store(true, std::memory_order_relaxed);
    }
  };
  team(count, static_cast<int>(std::min<size_t>(count, static_cast<size_t>(threads_))), body, &job);
  if (job.error) std::rethrow_exception(job.error);
}

void ThreadPool::parallel_for(size_t count, const std::function<void(size_t)>& task) {
  if (count == 0) return;
  if (threads_ == 1 || count == 1) {
    for (size_t i = 0; i < count; ++i) task(i);
    return;
  }
  if (const SharedTeamRun team = shared_team()) {
    run_on_team(team, count, task);
    return;
  }
  if (workers_.empty()) {  // the first job on the pool's own workers
    workers_.reserve(static_cast<size_t>(threads_ - 1));
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { work(); });
  }
  {
    std::lock_guard lock(mutex_);
    task_ = &task;
    count_ = count;
    next_ = 0;
    error_ = nullptr;
    ++generation_;
    published_generation_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  drain();
  std::exception_ptr error;
  // Every index has been taken; the workers that took one finish soon.
  poll_for(kSpin, [&] { return published_running_.load(std::memory_order_acquire) == 0; });
  {
    std::unique_lock lock(mutex_);
    // Every index has been taken; wait until the workers that took one have finished it.
    done_.wait(lock, [&] { return running_ == 0; });
    task_ = nullptr;
    count_ = 0;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

bool ThreadCountChoice::next_uses_all_threads() {
  if (!adaptive_) return true;
  if (samples_[1] < 2) return true;  // the first counted sample each way first
  if (samples_[0] < 2) return false;
  const bool all_is_faster = average_[1] <= average_[0];
  return ++calls_ % kExplore == 0 ? !all_is_faster : all_is_faster;
}

void ThreadCountChoice::record(bool all_threads, double milliseconds) {
  if (!adaptive_) return;
  const size_t way = all_threads ? 1 : 0;
  const int seen = samples_[way]++;
  if (seen == 0) return;  // built the primitives
  average_[way] = seen == 1 ? milliseconds : 0.75 * average_[way] + 0.25 * milliseconds;
}

ThreadPool* current_thread_pool() { return t_current_pool; }

int current_intra_op_threads() { return t_current_pool ? t_current_pool->size() : 1; }

IntraOpScope::IntraOpScope(ThreadPool* pool) : previous_(t_current_pool) { t_current_pool = pool; }

IntraOpScope::~IntraOpScope() { t_current_pool = previous_; }

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

LiveCpuContext::LiveCpuContext() { g_live_contexts.fetch_add(1, std::memory_order_relaxed); }

LiveCpuContext::~LiveCpuContext() { g_live_contexts.fetch_sub(1, std::memory_order_relaxed); }

int default_intra_op_threads() {
  const int live = std::max(g_live_contexts.load(std::memory_order_relaxed), 1);
  return std::max(available_cpus() / live, 1);
}

}  // namespace kiln::cpu
