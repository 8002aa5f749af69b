// Intra-op threads of the CPU backend (backends/cpu/intra_op_threads.hpp): the pool runs every
// task once, a GEMM split over it gives the single-threaded result, and ExecutionContext's
// thread count has the documented default and limits.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "add_relu_engine.hpp"
#include "backends/cpu/cpu_node_runner.hpp"
#include "backends/cpu/intra_op_threads.hpp"
#include "graph_test_builder.hpp"
#include "kiln/runtime.hpp"

namespace kiln::cpu {
namespace {

TEST(IntraOpThreads, PoolRunsEveryTaskOnceOnSeveralThreads) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.size(), 3);
  for (int round = 0; round < 3; ++round) {  // the pool is reused between jobs
    std::vector<std::atomic<int>> runs(40);
    std::mutex mutex;
    std::set<std::thread::id> threads;
    pool.parallel_for(runs.size(), [&](size_t i) {
      runs[i].fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard lock(mutex);
      threads.insert(std::this_thread::get_id());
    });
    for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].load(), 1) << "task " << i;
    EXPECT_GT(threads.size(), 1u) << "every task ran on one thread";
  }
}

TEST(IntraOpThreads, PoolRethrowsATaskErrorAndStaysUsable) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(10,
                                 [](size_t i) {
                                   if (i == 3) throw std::runtime_error("task 3");
                                 }),
               std::runtime_error);
  std::atomic<int> done{0};
  pool.parallel_for(5, [&](size_t) { done.fetch_add(1); });
  EXPECT_EQ(done.load(), 5);
}

// A test team for install_shared_team: runs the body on threads of its own and counts its jobs.
std::atomic<int> g_team_jobs{0};
std::atomic<int> g_team_widest{0};
void run_on_test_team(size_t count, int threads, void (*body)(void*, size_t), void* arg) {
  g_team_jobs.fetch_add(1);
  g_team_widest.store(std::max(g_team_widest.load(), threads));
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(arg, i);
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (std::thread& helper : helpers) helper.join();
}

// Once a shared team is installed (oneDNN's OpenMP team in production), pools hand it their jobs:
// every task still runs once, at most the pool's size of threads is asked for, a task's error
// comes back to the caller and the pool runs on its own workers again once the team is gone.
TEST(IntraOpThreads, PoolHandsItsJobsToTheSharedTeam) {
  const SharedTeamRun before = shared_team();
  install_shared_team(&run_on_test_team);
#if defined(__SANITIZE_THREAD__)
  EXPECT_EQ(shared_team(), nullptr) << "ThreadSanitizer builds keep the pools' own workers";
#else
  ASSERT_EQ(shared_team(), &run_on_test_team);
  g_team_jobs = 0;
  g_team_widest = 0;
  ThreadPool pool(3);
  std::vector<std::atomic<int>> runs(40);
  pool.parallel_for(runs.size(), [&](size_t i) { runs[i].fetch_add(1); });
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i].load(), 1) << "task " << i;
  EXPECT_EQ(g_team_jobs.load(), 1);
  EXPECT_EQ(g_team_widest.load(), 3);
  pool.parallel_for(2, [&](size_t) {});  // fewer tasks than threads: as many threads as tasks
  EXPECT_EQ(g_team_jobs.load(), 2);
  EXPECT_THROW(pool.parallel_for(10,
                                 [](size_t i) {
                                   if (i == 3) throw std::runtime_error("task 3");
                                 }),
               std::runtime_error);
  install_shared_team(nullptr);
  std::atomic<int> done{0};
  pool.parallel_for(5, [&](size_t) { done.fetch_add(1); });
  EXPECT_EQ(done.load(), 5);
  EXPECT_EQ(g_team_jobs.load(), 3) << "the pool kept using an uninstalled team";
#endif
  install_shared_team(before);
}

// A context times its calls on all its threads and on one, keeps the faster, and tries the other
// way every kExplore-th call; the first call each way (primitives being built) is not counted.
TEST(IntraOpThreads, ThreadCountChoiceKeepsTheFasterWayAndTriesTheOther) {
  ThreadCountChoice choice;
  // All threads first (one uncounted call, one counted), then one thread likewise.
  EXPECT_TRUE(choice.next_uses_all_threads());
  choice.record(true, 500.0);  // building: ignored
  EXPECT_TRUE(choice.next_uses_all_threads());
  choice.record(true, 10.0);
  EXPECT_FALSE(choice.next_uses_all_threads());
  choice.record(false, 900.0);  // building: ignored
  EXPECT_FALSE(choice.next_uses_all_threads());
  choice.record(false, 6.0);
  // One thread was faster: it runs, except every kExplore-th call.
  int all = 0;
  for (uint64_t call = 1; call <= 4 * ThreadCountChoice::kExplore; ++call) {
    const bool uses_all = choice.next_uses_all_threads();
    all += uses_all;
    choice.record(uses_all, uses_all ? 10.0 : 6.0);
  }
  EXPECT_EQ(all, 4);
  // The machine frees up: all threads get faster, and after a few explorations win.
  for (int call = 0; call < 40 * static_cast<int>(ThreadCountChoice::kExplore); ++call) {
    const bool uses_all = choice.next_uses_all_threads();
    choice.record(uses_all, uses_all ? 3.0 : 6.0);
  }
  int one = 0;
  for (uint64_t call = 1; call <= 2 * ThreadCountChoice::kExplore; ++call) {
    const bool uses_all = choice.next_uses_all_threads();
    one += !uses_all;
    choice.record(uses_all, uses_all ? 3.0 : 6.0);
  }
  EXPECT_EQ(one, 2);
}

// A thread count the user set is kept on every call, however the timings come out: only the
// default count is chosen by timing.
TEST(IntraOpThreads, ThreadCountChoiceKeepsAUserCountWhateverTheTimings) {
  ThreadCountChoice choice(/*adaptive=*/false);
  for (int call = 0; call < 4 * static_cast<int>(ThreadCountChoice::kExplore); ++call) {
    ASSERT_TRUE(choice.next_uses_all_threads()) << "call " << call;
    choice.record(true, 100.0);   // all threads: slow
    choice.record(false, 1.0);    // one thread: fast (as if measured)
  }
}

TEST(IntraOpThreads, ScopeSetsAndRestoresTheCurrentPool) {
  EXPECT_EQ(current_thread_pool(), nullptr);
  EXPECT_EQ(current_intra_op_threads(), 1);
  ThreadPool pool(2);
  {
    const IntraOpScope scope(&pool);
    EXPECT_EQ(current_thread_pool(), &pool);
    EXPECT_EQ(current_intra_op_threads(), 2);
  }
  EXPECT_EQ(current_thread_pool(), nullptr);
}

// oneDNN runs on OpenMP: a call's scope gives OpenMP the pool's size on the calling thread and
// restores the caller's own count afterwards.
// MatMul and transposed Gemm split into row or column strips give what one thread gives.
TEST(IntraOpThreads, SplitGemmMatchesOneThread) {
  std::mt19937 rng(5);
  struct Case {
    int64_t m, k, n;
    bool trans_a, trans_b;
  };
  for (const Case& c : {Case{64, 96, 300, false, false}, Case{333, 80, 40, false, false},
                        Case{70, 64, 250, true, true}, Case{260, 48, 33, true, false}}) {
    const HostTensor a = testing::random_tensor_f32(c.trans_a ? Shape{c.k, c.m} : Shape{c.m, c.k}, rng);
    const HostTensor b = testing::random_tensor_f32(c.trans_b ? Shape{c.n, c.k} : Shape{c.k, c.n}, rng);
    AttributeMap attrs;
    attrs.set("transA", Attribute::of_int(c.trans_a));
    attrs.set("transB", Attribute::of_int(c.trans_b));
    const std::vector<const HostTensor*> inputs{&a, &b};
    const std::vector<HostTensor> serial = run_node_on_cpu("g", "Gemm", attrs, inputs, 1);
    ThreadPool pool(3);
    const IntraOpScope scope(&pool);
    const std::vector<HostTensor> split = run_node_on_cpu("g", "Gemm", attrs, inputs, 1);
    ASSERT_EQ(split[0].shape, (Shape{c.m, c.n}));
    for (int64_t i = 0; i < c.m * c.n; ++i) {
      const float want = serial[0].data<float>()[i];
      ASSERT_NEAR(split[0].data<float>()[i], want, 1e-5f * (1.0f + std::fabs(want)))
          << "m=" << c.m << " n=" << c.n << " element " << i;
    }
  }
}

TEST(IntraOpThreads, ContextThreadsDefaultToTheCpusSharedByLiveContexts) {
  const auto bytes = testing::make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext first = engine.create_context();
  const int cpus = available_cpus();
  EXPECT_EQ(first.threads(), cpus);
  {
    ExecutionContext second = engine.create_context();
    EXPECT_EQ(first.threads(), std::max(cpus / 2, 1));
    EXPECT_EQ(second.threads(), std::max(cpus / 2, 1));
  }
  EXPECT_EQ(first.threads(), cpus);
  first.set_threads(3);
  EXPECT_EQ(first.threads(), 3);
  std::vector<float> x = testing::iota_values(8, -2.0f);
  NamedTensor in{"x", {DType::kFloat32, {2, 4}, x.data()}};
  const std::vector<Tensor> out = first.execute(std::span<const NamedTensor>(&in, 1));
  EXPECT_EQ(out[0].shape, (Shape{2, 4}));
  first.set_threads(0);
  EXPECT_EQ(first.threads(), cpus);
}

TEST(IntraOpThreads, ContextRejectsThreadCountsOutOfRange) {
  const auto bytes = testing::make_add_relu_engine(false);
  Engine engine = Engine::load_bytes(bytes.data(), bytes.size());
  ExecutionContext context = engine.create_context();
  context.set_threads(2);
  for (int bad : {-1, kMaxContextThreads + 1}) {
    try {
      context.set_threads(bad);
      FAIL() << "set_threads(" << bad << ") was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(std::to_string(bad)), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(context.threads(), 2) << "a refused count changed the setting";
}

}  // namespace
}  // namespace kiln::cpu
