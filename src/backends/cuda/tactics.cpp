#include "backends/cuda/tactics.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "runtime/tactic_cache.hpp"

namespace kiln::cuda {

std::string device_tag(const LaunchContext& ctx) {
  if (ctx.device == nullptr) return "sm?";
  return "sm" + std::to_string(ctx.device->sm_arch) + " " + ctx.device->name;
}

// KILN_RECORDED_TACTICS=ignore makes kernels choose again (for comparing against the recorded
// choice); anything else, or unset, uses them.
bool recorded_tactics_ignored() {
  static const bool ignored = [] {
    const char* value = std::getenv("KILN_RECORDED_TACTICS");
    return value != nullptr && std::string(value) == "ignore";
  }();
  return ignored;
}

std::optional<std::string> known_tactic(const LaunchContext& ctx, const std::string& key) {
  if (recorded_tactics_ignored()) return std::nullopt;
  if (ctx.attrs.get_string_or("kiln_tactic_key", "") == key) {
    const std::string tactic = ctx.attrs.get_string_or("kiln_tactic", "");
    if (!tactic.empty()) return tactic;
  }
  if (TacticCache* cache = active_tactic_cache()) return cache->find(key);
  return std::nullopt;
}

bool tuning_active() { return active_tactic_cache() != nullptr; }

bool tactic_logging() {
  static const bool log = [] {
    const char* value = std::getenv("KILN_LOG_TACTICS");
    return value != nullptr && std::string(value) == "1";
  }();
  return log;
}

void report_tactic(const LaunchContext& ctx, const std::string& key, const std::string& tactic) {
  if (tactic_logging()) std::fprintf(stderr, "kiln tactic: layer '%s' [%s] -> %s\n", std::string(ctx.node_name).c_str(), key.c_str(), tactic.c_str());
  if (TacticCache* cache = active_tactic_cache()) cache->record(std::string(ctx.node_name), key, tactic);
}

float time_on_stream(cudaStream_t stream, int iterations, const std::function<bool()>& launch) {
  // A kernel launch costs the host tens of microseconds, more than many layers take on the GPU, so
  // events around single launches would time the host. The candidate is captured into a CUDA graph
  // of kLaunches back-to-back runs and the graph is timed instead: GPU time only.
  constexpr int kLaunches = 10;
  constexpr float kFailed = std::numeric_limits<float>::infinity();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  const auto cleanup = [&] {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  };
  // One eager run first: library calls may initialise themselves, which capture would not allow.
  bool ok = launch() && cudaStreamSynchronize(stream) == cudaSuccess;
  if (ok) ok = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (ok) {
    bool launched = true;
    for (int i = 0; i < kLaunches && launched; ++i) launched = launch();
    ok = cudaStreamEndCapture(stream, &graph) == cudaSuccess && launched;
  }
  if (ok) ok = cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  if (ok) ok = cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess;
  if (ok) ok = cudaGraphLaunch(exec, stream) == cudaSuccess && cudaStreamSynchronize(stream) == cudaSuccess;
  std::vector<float> times;
  for (int i = 0; ok && i < iterations; ++i) {
    ok = cudaEventRecord(start, stream) == cudaSuccess && cudaGraphLaunch(exec, stream) == cudaSuccess &&
         cudaEventRecord(stop, stream) == cudaSuccess && cudaEventSynchronize(stop) == cudaSuccess;
    float ms = 0.0f;
    if (ok) ok = cudaEventElapsedTime(&ms, start, stop) == cudaSuccess;
    times.push_back(ms / kLaunches);
  }
  cleanup();
  if (!ok) {
    cudaGetLastError();  // a failed candidate must not poison later calls
    cudaStreamSynchronize(stream);
    return kFailed;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace kiln::cuda
