// The builder step that turns every FusedGroup node of a cuda graph into a generated kernel:
// plan (group_plan.hpp), write CUDA C++ (group_emitter.hpp), compile with NVRTC through the
// on-disk kernel cache (kernel_cache.hpp), and record on the node the kiln_kernel* attributes the
// CUDA launcher reads (ops/group_kernel_abi.hpp). Nodes with the same source share one module.
#pragma once

#include <string>
#include <vector>

#include "codegen/kernel_cache.hpp"
#include "format/engine_model.hpp"
#include "ir/graph.hpp"
#include "ops/op_registry.hpp"

namespace kiln::codegen {

struct GroupKernelStats {
  int groups = 0;         // FusedGroup nodes
  int modules = 0;        // distinct sources
  int cache_hits = 0;
  int compiled = 0;
};

// Needs: shapes inferred; every FusedGroup node planned when it was formed. Returns the modules
// for the engine's kernels section. Throws kiln::Error: kInternal when a group no longer plans or
// its source does not compile (naming the node), kUnsupported when NVRTC is missing.
std::vector<format::KernelModule> generate_group_kernels(ir::Graph& graph, int sm_arch,
                                                         const KernelCache& cache,
                                                         GroupKernelStats* stats = nullptr);

// The planning inputs of FusedGroup node `node` (its inputs' and outputs' dtypes, build-time
// shapes and constant values).
std::vector<ops::ValueInfo> group_input_infos(const ir::Graph& graph, const ir::Node& node);
std::vector<ops::ValueInfo> group_output_infos(const ir::Graph& graph, const ir::Node& node);

}  // namespace kiln::codegen
