// How CUDA kernels with several algorithms (GEMM, convolution) find and report their tactic; see
// runtime/tactic_cache.hpp for where tactics come from and go.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <optional>
#include <string>

#include "backends/cuda/cuda_kernel.hpp"

namespace kiln::cuda {

// "sm90 NVIDIA H200": tactics are only reused on the GPU model they were timed on.
std::string device_tag(const LaunchContext& ctx);

// The tactic for `key`: the layer's recorded one (attributes kiln_tactic_key / kiln_tactic) when
// its key is `key`, else the active timing cache's entry, else nullopt.
std::optional<std::string> known_tactic(const LaunchContext& ctx, const std::string& key);

// Whether a builder's tuning run is active on this thread (kernels then time their candidates).
bool tuning_active();

// KILN_LOG_TACTICS=1: kernels print their candidates' timings and every choice to stderr.
bool tactic_logging();

// Tells the active timing cache, if any, which tactic layer `ctx.node_name` chose for `key`.
void report_tactic(const LaunchContext& ctx, const std::string& key, const std::string& tactic);

// Median GPU milliseconds of one `launch` on `stream` (not the legacy default stream): one eager
// warm-up run, then a CUDA graph of several runs timed `iterations` times (prepare only: it
// captures and synchronises). A launch that fails, or cannot be captured, counts as +infinity.
float time_on_stream(cudaStream_t stream, int iterations, const std::function<bool()>& launch);

}  // namespace kiln::cuda
