#include "builder/engine_emitter.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_set>

#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "runtime/memory_planner.hpp"

namespace kiln::builder {
namespace {

using format::TensorKind;

uint64_t align_up(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

class Emitter {
 public:
  Emitter(const ir::Graph& graph, const EmitOptions& options) : graph_(graph), options_(options) {
    tensor_of_value_.assign(graph.values.size(), -1);
  }

  format::EngineModel emit() {
    graph_.verify();
    model_.producer = std::string("kiln ") + KILN_VERSION;
    model_.target = options_.target;
    model_.precision = options_.precision;
    model_.metadata_json = options_.metadata_json;
    emit_inputs();
    mark_direct_outputs();
    for (const ir::Node& node : graph_.nodes) emit_layer(node);
    emit_outputs();
    finish_weights();
    plan_memory();
    return std::move(model_);
  }

 private:
  int32_t add_tensor(std::string name, const ir::Value& value, TensorKind kind) {
    format::TensorDesc desc;
    // Tensor names are unique within an engine; bindings carry the user-visible names.
    desc.name = unique_tensor_name(std::move(name));
    desc.dtype = value.dtype;
    desc.shape = value.shape;
    desc.kind = kind;
    model_.tensors.push_back(std::move(desc));
    return static_cast<int32_t>(model_.tensors.size() - 1);
  }

  std::string unique_tensor_name(std::string name) {
    if (tensor_names_.insert(name).second) return name;
    for (size_t suffix = 1;; ++suffix) {
      std::string candidate = name + "/" + std::to_string(suffix);
      if (tensor_names_.insert(candidate).second) return candidate;
    }
  }

  int32_t weight_tensor(ir::ValueId id) {
    if (tensor_of_value_[static_cast<size_t>(id)] >= 0)
      return tensor_of_value_[static_cast<size_t>(id)];
    const ir::Value& value = graph_.value(id);
    const HostTensor& data = *value.constant;
    KILN_ASSERT(data.bytes.size() == static_cast<size_t>(data.numel()) * dtype_size(data.dtype),
                "constant '", value.name, "' has ", data.bytes.size(), " bytes for shape ",
                shape_to_string(data.shape));
    const int32_t t = add_tensor(value.name, value, TensorKind::kWeight);
    format::TensorDesc& desc = model_.tensors[static_cast<size_t>(t)];
    desc.dtype = data.dtype;
    desc.shape = data.shape;
    desc.weight_offset = align_up(weights_.size(), format::kWeightAlignment);
    desc.weight_size = data.bytes.size();
    weights_.resize(desc.weight_offset + desc.weight_size, 0);
    if (!data.bytes.empty())
      std::memcpy(weights_.data() + desc.weight_offset, data.bytes.data(), data.bytes.size());
    tensor_of_value_[static_cast<size_t>(id)] = t;
    return t;
  }

  void emit_inputs() {
    for (size_t i = 0; i < graph_.inputs.size(); ++i) {
      const ir::ValueId id = graph_.inputs[i];
      const ir::Value& value = graph_.value(id);
      KILN_ASSERT(!value.constant, "graph input '", value.name, "' is a constant");
      const int32_t t = add_tensor(value.name, value, TensorKind::kInput);
      tensor_of_value_[static_cast<size_t>(id)] = t;
      format::Binding binding;
      binding.name = value.name;
      binding.tensor = static_cast<uint32_t>(t);
      if (i < options_.input_ranges.size()) binding.ranges = options_.input_ranges[i];
      if (binding.ranges.size() != value.shape.size()) {
        KILN_ASSERT(binding.ranges.empty(), "input '", value.name, "' has ", binding.ranges.size(),
                    " ranges for rank ", value.shape.size());
        for (int64_t dim : value.shape) {
          if (dim == kDynamicDim) {
            fail(ErrorCode::kInvalidArgument, "input '", value.name,
                 "' has a dynamic dimension but no range");
          }
          binding.ranges.push_back(format::DimRange{dim, dim, dim});
        }
      }
      model_.inputs.push_back(std::move(binding));
    }
  }

  // Outputs a node can write directly: those produced by a node.
  void mark_direct_outputs() {
    std::unordered_set<std::string_view> names;
    for (ir::ValueId id : graph_.outputs) {
      // Output bindings are looked up by name, so a name can only be bound once.
      if (!names.insert(graph_.value(id).name).second) {
        fail(ErrorCode::kInvalidArgument, "graph output '", graph_.value(id).name,
             "' is listed twice");
      }
      if (graph_.value(id).producer >= 0 && !graph_.is_constant(id)) direct_outputs_.insert(id);
    }
  }

  void emit_layer(const ir::Node& node) {
    KILN_ASSERT(!node.removed, "node ", node.name, " is removed but not compacted");
    format::Layer layer;
    layer.name = node.name;
    layer.op = node.op_type;
    layer.attrs = node.attrs;
    for (ir::ValueId id : node.inputs) {
      if (id == ir::kNoValue) {
        layer.inputs.push_back(-1);
      } else if (graph_.is_constant(id)) {
        layer.inputs.push_back(weight_tensor(id));
      } else {
        const int32_t t = tensor_of_value_[static_cast<size_t>(id)];
        KILN_ASSERT(t >= 0, "node ", node.name, " reads '", graph_.value(id).name,
                    "' before it is produced");
        layer.inputs.push_back(t);
      }
    }
    for (ir::ValueId id : node.outputs) {
      const ir::Value& value = graph_.value(id);
      KILN_ASSERT(tensor_of_value_[static_cast<size_t>(id)] < 0, "value '", value.name,
                  "' is produced twice");
      const TensorKind kind =
          direct_outputs_.count(id) ? TensorKind::kOutput : TensorKind::kActivation;
      const int32_t t = add_tensor(value.name, value, kind);
      tensor_of_value_[static_cast<size_t>(id)] = t;
      layer.outputs.push_back(t);
    }
    model_.layers.push_back(std::move(layer));
  }

  void emit_outputs() {
    for (ir::ValueId id : graph_.outputs) {
      const ir::Value& value = graph_.value(id);
      format::Binding binding;
      binding.name = value.name;
      if (direct_outputs_.count(id)) {
        binding.tensor = static_cast<uint32_t>(tensor_of_value_[static_cast<size_t>(id)]);
      } else {
        // A constant or a graph input: the output needs its own tensor, written by a copy.
        const int32_t source =
            graph_.is_constant(id) ? weight_tensor(id) : tensor_of_value_[static_cast<size_t>(id)];
        KILN_ASSERT(source >= 0, "graph output '", value.name, "' is never produced");
        const int32_t copy = add_tensor(value.name, value, TensorKind::kOutput);
        model_.tensors[static_cast<size_t>(copy)].dtype =
            model_.tensors[static_cast<size_t>(source)].dtype;
        model_.tensors[static_cast<size_t>(copy)].shape =
            model_.tensors[static_cast<size_t>(source)].shape;
        format::Layer layer;
        layer.name = "output_copy/" + value.name;
        layer.op = "Identity";
        layer.inputs = {source};
        layer.outputs = {copy};
        model_.layers.push_back(std::move(layer));
        binding.tensor = static_cast<uint32_t>(copy);
      }
      model_.outputs.push_back(std::move(binding));
    }
  }

  void finish_weights() {
    auto storage = std::make_shared<std::vector<uint8_t>>(std::move(weights_));
    model_.weights = std::span<const uint8_t>(storage->data(), storage->size());
    model_.weights_storage = std::move(storage);
  }

  void plan_memory() {
    format::MemoryPlan& plan = model_.memory_plan;
    const size_t num_tensors = model_.tensors.size();
    plan.alignment = 64;
    plan.offsets.assign(num_tensors, format::MemoryPlan::kNoOffset);
    plan.first_use.assign(num_tensors, -1);
    plan.last_use.assign(num_tensors, -1);
    for (size_t l = 0; l < model_.layers.size(); ++l) {
      const auto index = static_cast<int32_t>(l);
      for (int32_t t : model_.layers[l].outputs) {
        plan.first_use[static_cast<size_t>(t)] = index;
        plan.last_use[static_cast<size_t>(t)] = index;
      }
      for (int32_t t : model_.layers[l].inputs)
        if (t >= 0)
          plan.last_use[static_cast<size_t>(t)] =
              std::max(plan.last_use[static_cast<size_t>(t)], index);
    }
    std::vector<BufferRequest> requests;
    std::vector<size_t> request_tensor;
    bool all_static = true;
    for (size_t t = 0; t < num_tensors; ++t) {
      const format::TensorDesc& desc = model_.tensors[t];
      if (desc.kind != TensorKind::kActivation) continue;
      if (!shape_is_static(desc.shape)) {
        all_static = false;
        continue;
      }
      const auto size = static_cast<uint64_t>(checked_byte_size(desc.shape, desc.dtype, desc.name));
      requests.push_back(BufferRequest{size, plan.first_use[t], plan.last_use[t]});
      request_tensor.push_back(t);
    }
    plan.is_static = all_static;
    if (!all_static) {
      plan.arena_size = 0;
      return;
    }
    const ArenaPlan arena = plan_arena(requests, plan.alignment);
    for (size_t r = 0; r < requests.size(); ++r) plan.offsets[request_tensor[r]] = arena.offsets[r];
    plan.arena_size = arena.total_size;
  }

  const ir::Graph& graph_;
  const EmitOptions& options_;
  format::EngineModel model_;
  std::vector<int32_t> tensor_of_value_;
  std::unordered_set<std::string> tensor_names_;
  std::unordered_set<ir::ValueId> direct_outputs_;
  std::vector<uint8_t> weights_;
};

}  // namespace

format::EngineModel emit_engine_model(const ir::Graph& graph, const EmitOptions& options) {
  return Emitter(graph, options).emit();
}

}  // namespace kiln::builder
