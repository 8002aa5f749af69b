#include "builder/memory_ceiling.hpp"

#include "base/checked_math.hpp"
#include "base/error.hpp"

namespace kiln::builder {
namespace {

[[noreturn]] void fail_over_limit(std::string_view what, uint64_t bytes, const MemoryLimit& limit) {
  fail(ErrorCode::kOutOfMemory, what, " needs ", format_bytes(bytes),
       ", more than the build's memory limit of ", format_bytes(limit.bytes), " (", limit.source,
       "; set BuilderConfig::memory_limit, kiln build --memory-limit or ", kMemoryLimitEnv,
       " to change it)");
}

void check_value(const ir::Value& value, std::string_view owner, const MemoryLimit& limit) {
  if (!shape_is_static(value.shape)) return;
  const std::string what = detail::concat(owner, "tensor '", value.name, "' (", dtype_name(value.dtype),
                                          shape_to_string(value.shape), ")");
  const auto bytes = static_cast<uint64_t>(checked_byte_size(value.shape, value.dtype, what));
  if (bytes > limit.bytes) fail_over_limit(what, bytes, limit);
}

}  // namespace

MemoryLimit build_memory_limit(const BuilderConfig& config) {
  if (config.memory_limit != 0) return MemoryLimit{config.memory_limit, "BuilderConfig::memory_limit"};
  return host_memory_limit();
}

void check_static_tensors_fit(const ir::Graph& graph, const MemoryLimit& limit) {
  for (ir::ValueId id : graph.inputs) check_value(graph.value(id), "input ", limit);
  for (const ir::Node& node : graph.nodes) {
    if (node.removed) continue;
    const std::string owner = detail::concat("node '", node.name, "' (", node.op_type, "): output ");
    for (ir::ValueId id : node.outputs) check_value(graph.value(id), owner, limit);
  }
}

void check_arena_fits(const format::EngineModel& model, const MemoryLimit& limit) {
  const format::MemoryPlan& plan = model.memory_plan;
  if (!plan.is_static || plan.arena_size <= limit.bytes) return;
  size_t largest = 0;
  uint64_t largest_bytes = 0;
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    if (desc.kind != format::TensorKind::kActivation) continue;
    const auto bytes = static_cast<uint64_t>(checked_byte_size(desc.shape, desc.dtype, desc.name));
    if (bytes >= largest_bytes) {
      largest = t;
      largest_bytes = bytes;
    }
  }
  std::string writer;
  for (const format::Layer& layer : model.layers) {
    for (int32_t out : layer.outputs)
      if (static_cast<size_t>(out) == largest) {
        writer = ", written by layer '" + layer.name + "' (" + layer.op + ")";
      }
  }
  const format::TensorDesc& desc = model.tensors[largest];
  fail_over_limit(detail::concat("the engine's activation arena (largest: tensor '", desc.name, "' ",
                                 dtype_name(desc.dtype), shape_to_string(desc.shape), ", ",
                                 format_bytes(largest_bytes), writer, ")"),
                  plan.arena_size, limit);
}

}  // namespace kiln::builder
