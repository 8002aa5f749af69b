// Shape propagation (running shape-value layers on the host) and arena placement for one set of
// input shapes. Backend-agnostic: the executors allocate and run.
#include <algorithm>
#include <cstring>

#include "backends/cpu/cpu_node_runner.hpp"
#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "runtime/context_state.hpp"
#include "runtime/memory_planner.hpp"

namespace kiln::detail {
namespace {

[[noreturn]] void fail_over_limit(const EngineState& engine, std::string_view what, uint64_t bytes) {
  fail(ErrorCode::kOutOfMemory, engine.source, ": ", what, " needs ", format_bytes(bytes), ", more than ",
       describe_memory_limit(engine.memory_limit), "; check the input shapes");
}

std::string describe_tensor(const EngineState& engine, size_t t, const Shape& shape) {
  const format::TensorDesc& desc = engine.model.tensors[t];
  const int32_t producer = engine.producer[t];
  std::string text = "tensor '" + desc.name + "' (" + std::string(dtype_name(desc.dtype)) +
                     shape_to_string(shape);
  if (producer >= 0) {
    const format::Layer& layer = engine.model.layers[static_cast<size_t>(producer)];
    text += ", written by layer '" + layer.name + "' (" + layer.op + ")";
  }
  return text + ")";
}

void start_propagation(const EngineState& engine, ShapePlan& plan) {
  const auto& model = engine.model;
  plan.shapes.assign(model.tensors.size(), Shape{});
  plan.shape_values.assign(model.tensors.size(), HostTensor{});
  plan.has_shape_value.assign(model.tensors.size(), false);
  for (size_t t = 0; t < model.tensors.size(); ++t)
    if (model.tensors[t].kind == format::TensorKind::kWeight) plan.shapes[t] = model.tensors[t].shape;
  for (size_t i = 0; i < model.inputs.size(); ++i) plan.shapes[model.inputs[i].tensor] = plan.input_shapes[i];
}

// Shapes (and host-computed values) of layers [begin, end); earlier layers' are in `plan`.
// `input_values`: host copies of value inputs where the inputs are not host memory (CallState).
void propagate_shapes(const EngineState& engine, std::span<const TensorView> input_data,
                      std::span<const HostTensor* const> input_values, ShapePlan& plan, size_t begin, size_t end) {
  const auto& model = engine.model;
  auto input_value = [&](size_t t) {
    return t < input_values.size() && input_values[t] ? view_of(*input_values[t]) : input_data[t];
  };

  std::vector<ops::ValueInfo> in_info;
  std::vector<ops::ValueInfo> out_info;
  std::vector<HostTensor> value_copies;
  std::vector<std::string_view> output_names;
  for (size_t l = begin; l < end; ++l) {
    const format::Layer& layer = model.layers[l];
    const PreparedLayer& prepared = engine.layers[l];
    in_info.assign(layer.inputs.size(), ops::ValueInfo{});
    value_copies.clear();
    value_copies.reserve(layer.inputs.size());
    for (size_t i = 0; i < layer.inputs.size(); ++i) {
      const int32_t t = layer.inputs[i];
      if (t < 0) {
        in_info[i].present = false;
        continue;
      }
      const auto ti = static_cast<size_t>(t);
      in_info[i].dtype = model.tensors[ti].dtype;
      in_info[i].shape = plan.shapes[ti];
      if (engine.weight_values[ti]) {
        in_info[i].value = engine.weight_values[ti].get();
      } else if (plan.has_shape_value[ti]) {
        in_info[i].value = &plan.shape_values[ti];
      } else if (engine.is_value_input(t)) {
        // Only these are on the host where the engine runs on a device (CallState::input_values).
        const TensorView view = input_value(ti);
        HostTensor& copy = value_copies.emplace_back(view.dtype, view.shape);
        std::memcpy(copy.bytes.data(), view.data, copy.bytes.size());
        in_info[i].value = &copy;
      }
    }
    out_info.assign(layer.outputs.size(), ops::ValueInfo{});
    output_names.clear();
    for (int32_t t : layer.outputs) output_names.push_back(model.tensors[static_cast<size_t>(t)].name);
    // Data-dependent sizes are planned at their upper bounds until the layer reports its own.
    if (prepared.def->data_dependent_shapes) {
      ops::infer_node_bounds(*prepared.def, layer.name, layer.attrs, in_info, out_info, output_names);
    } else {
      ops::infer_node(*prepared.def, layer.name, layer.attrs, in_info, out_info, output_names);
    }
    for (size_t o = 0; o < layer.outputs.size(); ++o) {
      const auto t = static_cast<size_t>(layer.outputs[o]);
      const format::TensorDesc& desc = model.tensors[t];
      const Shape& got = out_info[o].shape;
      if (out_info[o].dtype != desc.dtype || !shape_is_static(got) || got.size() != desc.shape.size()) {
        fail(ErrorCode::kInternal, "layer '", layer.name, "' (", layer.op, "): computed ", dtype_name(out_info[o].dtype),
             shape_to_string(got), " for tensor '", desc.name, "' but the engine declares ", dtype_name(desc.dtype),
             shape_to_string(desc.shape));
      }
      for (size_t d = 0; d < got.size(); ++d) {
        if (desc.shape[d] != kDynamicDim && desc.shape[d] != got[d]) {
          fail(ErrorCode::kInvalidArgument, "layer '", layer.name, "' (", layer.op, "): tensor '", desc.name,
               "' would have shape ", shape_to_string(got), " but the engine was built for ",
               shape_to_string(desc.shape), "; check the input shapes");
        }
      }
      plan.shapes[t] = got;
    }
    if (!prepared.computes_shape_values) continue;

    // Run now on the host: later layers need these values to know their shapes.
    std::vector<TensorView> in_views(layer.inputs.size());
    for (size_t i = 0; i < layer.inputs.size(); ++i) {
      const int32_t t = layer.inputs[i];
      if (t < 0) continue;
      const auto ti = static_cast<size_t>(t);
      if (engine.weight_values[ti]) {
        in_views[i] = view_of(*engine.weight_values[ti]);
      } else if (plan.has_shape_value[ti]) {
        in_views[i] = view_of(plan.shape_values[ti]);
      } else if (engine.is_value_input(t)) {
        in_views[i] = input_value(ti);
      } else {
        // Only Shape/Size layers read tensors that were not computed here; they use the shape alone.
        in_views[i] = TensorView{model.tensors[ti].dtype, plan.shapes[ti], placeholder_bytes()};
      }
    }
    std::vector<TensorView> out_views(layer.outputs.size());
    for (size_t o = 0; o < layer.outputs.size(); ++o) {
      const auto t = static_cast<size_t>(layer.outputs[o]);
      // Sizes were checked for overflow by infer_node; a value computed on the host must also
      // fit the ceiling before it is allocated.
      const auto bytes = static_cast<uint64_t>(
          checked_byte_size(plan.shapes[t], model.tensors[t].dtype, model.tensors[t].name));
      if (bytes > engine.memory_limit.bytes) {
        fail_over_limit(engine, describe_tensor(engine, t, plan.shapes[t]) + ", computed on the host,", bytes);
      }
      plan.shape_values[t] = HostTensor(model.tensors[t].dtype, plan.shapes[t]);
      plan.has_shape_value[t] = true;
      out_views[o] = view_of(plan.shape_values[t]);
      if (out_views[o].data == nullptr) out_views[o].data = placeholder_bytes();
    }
    cpu::KernelContext ctx{layer.name, layer.op, layer.attrs, in_views, out_views};
    cpu::invoke_cpu_kernel(*prepared.kernel, ctx);
    if (!prepared.def->data_dependent_shapes) continue;
    for (size_t o = 0; o < layer.outputs.size(); ++o) {  // the real sizes, within the bounds
      const auto t = static_cast<size_t>(layer.outputs[o]);
      HostTensor& value = plan.shape_values[t];
      value.shape = out_views[o].shape;
      value.bytes.resize(static_cast<size_t>(checked_byte_size(value.shape, value.dtype, model.tensors[t].name)));
      plan.shapes[t] = value.shape;
    }
  }
}

// Places the activations segment `segment`'s layers write in that segment's arena.
void place_in_arena(const EngineState& engine, bool place_shape_values, ShapePlan& plan, size_t segment) {
  const auto& model = engine.model;
  const auto& recorded = model.memory_plan;
  if (segment == 0) plan.offsets.assign(model.tensors.size(), format::MemoryPlan::kNoOffset);
  std::vector<BufferRequest> requests;
  std::vector<size_t> request_tensor;
  // The builder's plan gives every tensor its own bytes; views share theirs, so it is only used
  // when the engine has none.
  bool matches_build_shapes = recorded.is_static && recorded.offsets.size() == model.tensors.size() &&
                              recorded.alignment % kArenaAlignment == 0 && !engine.has_views &&
                              !engine.has_data_dependent_shapes();
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    const format::TensorDesc& desc = model.tensors[t];
    if (desc.kind != format::TensorKind::kActivation) continue;
    if (engine.segment_of[t] != static_cast<int32_t>(segment)) continue;
    if (plan.has_shape_value[t] && !place_shape_values) continue;
    if (engine.storage_of[t] != static_cast<int32_t>(t)) continue;  // a view: placed with its storage
    matches_build_shapes = matches_build_shapes && plan.shapes[t] == desc.shape &&
                           recorded.offsets[t] != format::MemoryPlan::kNoOffset;
    const auto size = static_cast<uint64_t>(checked_byte_size(plan.shapes[t], desc.dtype, desc.name));
    if (size > engine.memory_limit.bytes) fail_over_limit(engine, describe_tensor(engine, t, plan.shapes[t]), size);
    requests.push_back(BufferRequest{size, engine.first_use[t], std::max(engine.first_use[t], engine.last_use[t])});
    request_tensor.push_back(t);
  }
  if (matches_build_shapes) {
    // The builder's plan is valid for these shapes: use it as recorded in the engine.
    for (size_t t : request_tensor) plan.offsets[t] = recorded.offsets[t];
    plan.arena_size = recorded.arena_size;
  } else {
    ArenaPlan arena_plan = plan_arena(requests, kArenaAlignment);
    for (size_t r = 0; r < requests.size(); ++r) plan.offsets[request_tensor[r]] = arena_plan.offsets[r];
    plan.arena_size = arena_plan.total_size;
  }
  if (segment == 0) plan.segment_arena_sizes.clear();
  plan.segment_arena_sizes.push_back(plan.arena_size);
  if (segment > 0) plan.arena_size = plan.segment_arena_sizes.front();
  const uint64_t arena_size = plan.segment_arena_sizes.back();
  if (arena_size > engine.memory_limit.bytes) {
    if (requests.empty()) fail_over_limit(engine, "the engine's recorded activation arena", arena_size);
    size_t largest = 0;
    for (size_t r = 1; r < requests.size(); ++r)
      if (requests[r].size > requests[largest].size) largest = r;
    const size_t t = request_tensor[largest];
    fail_over_limit(engine,
                    "the activation arena for these input shapes (largest: " +
                        describe_tensor(engine, t, plan.shapes[t]) + ", " + format_bytes(requests[largest].size) + ")",
                    arena_size);
  }
  // Views and in-place outputs, in layer order (a view of a view follows its input): their input's
  // offset, plus the slab's start for views that select one.
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const PreparedLayer& prepared = engine.layers[l];
    if (prepared.in_place_input >= 0) {
      const auto in = static_cast<size_t>(model.layers[l].inputs[static_cast<size_t>(prepared.in_place_input)]);
      const auto out = static_cast<size_t>(model.layers[l].outputs[0]);
      // Backend::writes_over_input's contract: the op's inference gives the output its input's shape.
      KILN_ASSERT(plan.shapes[out] == plan.shapes[in], "layer '", model.layers[l].name, "' writes ",
                  shape_to_string(plan.shapes[out]), " over ", shape_to_string(plan.shapes[in]));
      plan.offsets[out] = plan.offsets[in];
      continue;
    }
    if (!prepared.is_view) continue;
    const auto in = static_cast<size_t>(model.layers[l].inputs[0]);
    const auto out = static_cast<size_t>(model.layers[l].outputs[0]);
    plan.offsets[out] = plan.offsets[in];
    if (prepared.view_axis < 0 || plan.offsets[in] == format::MemoryPlan::kNoOffset) continue;
    const Shape& shape = plan.shapes[in];
    uint64_t inner = 1;
    for (size_t d = static_cast<size_t>(prepared.view_axis) + 1; d < shape.size(); ++d) inner *= static_cast<uint64_t>(shape[d]);
    plan.offsets[out] += static_cast<uint64_t>(prepared.view_start) * inner * dtype_size(model.tensors[in].dtype);
  }
}

}  // namespace

bool ContextState::update_plan(bool place_shape_values) {
  std::vector<Shape> input_shapes(engine->inputs.size());
  for (size_t i = 0; i < engine->model.inputs.size(); ++i) {
    input_shapes[i] = data[engine->model.inputs[i].tensor].shape;
  }
  // Data-dependent shapes make the later segments' plans differ from call to call: re-plan.
  if (have_plan && !engine->shapes_depend_on_input_values && !engine->has_data_dependent_shapes() &&
      input_shapes == plan.input_shapes) {
    return false;
  }
  have_plan = false;
  plan.input_shapes = std::move(input_shapes);
  start_propagation(*engine, plan);
  propagate_shapes(*engine, data, input_values, plan, 0, engine->segment_ends.front());
  place_in_arena(*engine, place_shape_values, plan, 0);
  plan.planned_segments = 1;
  have_plan = true;
  return true;
}

void ContextState::plan_segment(size_t segment) {
  KILN_ASSERT(segment == plan.planned_segments && segment < engine->segment_ends.size(), "segment ", segment,
              " planned out of order");
  propagate_shapes(*engine, data, input_values, plan, engine->segment_ends[segment - 1], engine->segment_ends[segment]);
  place_in_arena(*engine, /*place_shape_values=*/false, plan, segment);
  plan.planned_segments = segment + 1;
}

}  // namespace kiln::detail
