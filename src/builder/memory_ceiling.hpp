// The build's memory ceiling (BuilderConfig::memory_limit, else KILN_MEMORY_LIMIT, else physical
// memory): a model whose static tensors or static activation arena exceed it fails to build with
// an error naming the node and the size, instead of producing an engine no machine of this size
// can run (or attempting the allocation while building it).
#pragma once

#include "base/memory_limit.hpp"
#include "format/engine_model.hpp"
#include "ir/graph.hpp"
#include "kiln/builder.hpp"

namespace kiln::builder {

// The ceiling for this build. Throws kInvalidArgument for a malformed KILN_MEMORY_LIMIT.
MemoryLimit build_memory_limit(const BuilderConfig& config);

// Every value of `graph` whose shape is static, constants included, must fit `limit`. Throws
// kOutOfMemory naming the producing node (or the constant/input), the tensor, its dtype and
// dims, its size and the limit. Values with dynamic dims are checked at run time.
void check_static_tensors_fit(const ir::Graph& graph, const MemoryLimit& limit);

// The engine's static arena (when it has one) must fit `limit`; throws kOutOfMemory naming the
// largest activation and its layer.
void check_arena_fits(const format::EngineModel& model, const MemoryLimit& limit);

}  // namespace kiln::builder
