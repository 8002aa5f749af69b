// Engine loading: verification beyond the file format (ops, kernels, targets, plugins) and the
// per-engine preparation every context shares.
#include <algorithm>
#include <deque>
#include <fstream>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "backends/backend_registry.hpp"
#include "backends/cpu/cpu_kernel.hpp"
#include "base/error.hpp"
#include "base/host_tensor.hpp"
#include "format/engine_io.hpp"
#include "plugins/engine_plugins.hpp"
#include "runtime/engine_state.hpp"

namespace kiln {
namespace detail {

namespace {

bool reads_only_shape(const std::string& op) { return op == "Shape" || op == "Size"; }

BindingInfo describe_binding(const format::EngineModel& model, const format::Binding& binding) {
  const format::TensorDesc& desc = model.tensors[binding.tensor];
  BindingInfo info;
  info.name = binding.name;
  info.dtype = desc.dtype;
  info.shape = desc.shape;
  for (size_t d = 0; d < desc.shape.size(); ++d) {
    if (d < binding.ranges.size()) {
      info.min_shape.push_back(binding.ranges[d].min);
      info.max_shape.push_back(binding.ranges[d].max);
    } else {
      info.min_shape.push_back(desc.shape[d]);
      info.max_shape.push_back(desc.shape[d]);
    }
  }
  return info;
}

// Finds which layers must run during shape propagation: those whose outputs' values some layer's
// infer function needs, and transitively the layers those read from (except through Shape/Size,
// which need only their input's shape).
void mark_shape_value_layers(EngineState& state) {
  const auto& model = state.model;
  std::vector<bool> value_needed(model.tensors.size(), false);
  std::deque<int32_t> pending;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    for (int input_index : state.layers[l].def->value_inputs) {
      const auto& inputs = model.layers[l].inputs;
      if (static_cast<size_t>(input_index) >= inputs.size() || inputs[static_cast<size_t>(input_index)] < 0) continue;
      pending.push_back(inputs[static_cast<size_t>(input_index)]);
    }
  }
  while (!pending.empty()) {
    const int32_t t = pending.front();
    pending.pop_front();
    if (value_needed[static_cast<size_t>(t)]) continue;
    value_needed[static_cast<size_t>(t)] = true;
    const int32_t producer = state.producer[static_cast<size_t>(t)];
    if (producer < 0) {
      if (model.tensors[static_cast<size_t>(t)].kind == format::TensorKind::kInput) {
        state.shapes_depend_on_input_values = true;
        state.value_input_tensors.push_back(t);
      }
      continue;
    }
    PreparedLayer& layer = state.layers[static_cast<size_t>(producer)];
    if (layer.computes_shape_values) continue;
    layer.computes_shape_values = true;
    const format::Layer& desc = model.layers[static_cast<size_t>(producer)];
    if (reads_only_shape(desc.op)) continue;
    for (int32_t in : desc.inputs)
      if (in >= 0) pending.push_back(in);
  }
  // Weights read as values get a HostTensor the infer functions can see.
  state.weight_values.assign(model.tensors.size(), nullptr);
  for (size_t t = 0; t < model.tensors.size(); ++t) {
    if (!value_needed[t] || model.tensors[t].kind != format::TensorKind::kWeight) continue;
    const TensorView view = state.weight_view(static_cast<int32_t>(t));
    auto host = std::make_shared<HostTensor>(view.dtype, view.shape);
    std::copy_n(static_cast<const uint8_t*>(view.data), host->bytes.size(), host->bytes.data());
    state.weight_values[t] = std::move(host);
  }
}

bool is_view_op(const std::string& op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity";
}

// The constant integers of weight input `i` of `layer`, or nullopt.
std::optional<std::vector<int64_t>> weight_ints(const EngineState& state, const format::Layer& layer, size_t i) {
  if (i >= layer.inputs.size() || layer.inputs[i] < 0) return std::nullopt;
  if (state.tensor(layer.inputs[i]).kind != format::TensorKind::kWeight) return std::nullopt;
  const TensorView view = state.weight_view(layer.inputs[i]);
  if (view.dtype != DType::kInt64 && view.dtype != DType::kInt32) return std::nullopt;
  return read_indices(view);
}

// A Gather of one constant index, or a unit-step Slice of one axis, whose input has only dims of
// 1 before that axis takes a contiguous slab of its input: it can be a view at an offset. Only
// where the offset is a multiple of the arena's alignment whatever the dynamic dims are (kernels
// use 16-byte vector accesses and libraries want aligned pointers). Returns {axis, start} or
// nullopt.
std::optional<std::pair<int, int64_t>> slab_of(const EngineState& state, const format::Layer& layer) {
  if (layer.op != "Gather" && layer.op != "Slice") return std::nullopt;
  if (layer.inputs.empty() || layer.inputs[0] < 0) return std::nullopt;
  const format::TensorDesc& in = state.tensor(layer.inputs[0]);
  const auto rank = static_cast<int64_t>(in.shape.size());
  int64_t axis = 0;
  int64_t start = 0;
  if (layer.op == "Gather") {
    const auto index = weight_ints(state, layer, 1);
    if (!index || index->size() != 1) return std::nullopt;
    axis = layer.attrs.get_int_or("axis", 0);
    if (axis < 0) axis += rank;
    start = index->front();
  } else {
    const auto starts = weight_ints(state, layer, 1);
    if (!starts || starts->size() != 1 || !weight_ints(state, layer, 2)) return std::nullopt;
    if (layer.inputs.size() > 3 && layer.inputs[3] >= 0) {
      const auto axes = weight_ints(state, layer, 3);
      if (!axes || axes->size() != 1) return std::nullopt;
      axis = axes->front() < 0 ? axes->front() + rank : axes->front();
    }
    if (layer.inputs.size() > 4 && layer.inputs[4] >= 0) {
      const auto steps = weight_ints(state, layer, 4);
      if (!steps || steps->size() != 1 || steps->front() != 1) return std::nullopt;
    }
    start = starts->front();
  }
  if (axis < 0 || axis >= rank) return std::nullopt;
  const int64_t extent = in.shape[static_cast<size_t>(axis)];
  if (extent == kDynamicDim) return std::nullopt;  // a negative or clamped start needs the extent
  if (start < 0) start += extent;
  if (start < 0 || start >= extent) return std::nullopt;
  for (int64_t d = 0; d < axis; ++d) {
    if (in.shape[static_cast<size_t>(d)] != 1) return std::nullopt;
  }
  // Static inner dims decide the alignment; a dynamic dim only multiplies the offset.
  uint64_t inner_bytes = dtype_size(in.dtype);
  for (int64_t d = axis + 1; d < rank; ++d) {
    const int64_t dim = in.shape[static_cast<size_t>(d)];
    if (dim != kDynamicDim) inner_bytes *= static_cast<uint64_t>(dim);
  }
  if ((static_cast<uint64_t>(start) * inner_bytes) % kArenaAlignment != 0) return std::nullopt;
  return std::make_pair(static_cast<int>(axis), start);
}

// Reshape-like layers between two activations computed on the device become views: the output
// shares its input's storage, whose live range grows to cover every tensor sharing it.
void mark_view_layers(EngineState& state) {
  const auto& model = state.model;
  state.storage_of.resize(model.tensors.size());
  for (size_t t = 0; t < model.tensors.size(); ++t) state.storage_of[t] = static_cast<int32_t>(t);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const format::Layer& layer = model.layers[l];
    PreparedLayer& prepared = state.layers[l];
    const std::optional<std::pair<int, int64_t>> slab = is_view_op(layer.op) ? std::nullopt : slab_of(state, layer);
    if ((!is_view_op(layer.op) && !slab) || prepared.computes_shape_values || layer.outputs.size() != 1 ||
        layer.inputs.empty() || layer.inputs[0] < 0) {
      continue;
    }
    const auto in = static_cast<size_t>(layer.inputs[0]);
    const auto out = static_cast<size_t>(layer.outputs[0]);
    const int32_t in_producer = state.producer[in];
    if (model.tensors[in].kind != format::TensorKind::kActivation ||
        model.tensors[out].kind != format::TensorKind::kActivation || model.tensors[in].dtype != model.tensors[out].dtype ||
        in_producer < 0 || state.layers[static_cast<size_t>(in_producer)].computes_shape_values) {
      continue;
    }
    prepared.is_view = true;
    if (slab) std::tie(prepared.view_axis, prepared.view_start) = *slab;
    state.has_views = true;
    const auto root = static_cast<size_t>(state.storage_of[in]);
    state.storage_of[out] = static_cast<int32_t>(root);
    state.first_use[root] = std::min(state.first_use[root], state.first_use[out]);
    state.last_use[root] = std::max(state.last_use[root], state.last_use[out]);
  }
}

// Layers whose backend kernel writes output 0 over an input (Backend::writes_over_input) get that
// input's storage where the input is an activation of the same dtype that no later layer reads
// (its storage's live range, views included, ends at this layer): the output then owns the
// storage's remaining live range. Runs after mark_view_layers, whose ranges it reads.
void mark_in_place_layers(EngineState& state, const backends::Backend& backend) {
  const auto& model = state.model;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const format::Layer& layer = model.layers[l];
    PreparedLayer& prepared = state.layers[l];
    if (prepared.is_view || prepared.computes_shape_values || layer.outputs.empty()) continue;
    const auto out = static_cast<size_t>(layer.outputs[0]);
    const format::TensorDesc& out_desc = model.tensors[out];
    if (out_desc.kind != format::TensorKind::kActivation) continue;
    for (size_t i = 0; i < layer.inputs.size(); ++i) {
      if (layer.inputs[i] < 0 || !backend.writes_over_input(layer, i)) continue;
      const auto in = static_cast<size_t>(layer.inputs[i]);
      const auto root = static_cast<size_t>(state.storage_of[in]);
      const int32_t in_producer = state.producer[in];
      if (model.tensors[in].kind != format::TensorKind::kActivation || model.tensors[in].dtype != out_desc.dtype ||
          model.tensors[in].shape != out_desc.shape || in_producer < 0 ||
          state.layers[static_cast<size_t>(in_producer)].computes_shape_values ||
          state.last_use[root] != static_cast<int32_t>(l)) {
        continue;
      }
      // Read once more, by this layer alone, and only where it is the same input slot (a layer
      // reading the tensor through two inputs would see it change under it).
      size_t reads = 0;
      for (const int32_t t : layer.inputs)
        if (t >= 0 && state.storage_of[static_cast<size_t>(t)] == static_cast<int32_t>(root)) ++reads;
      if (reads != 1) continue;
      prepared.in_place_input = static_cast<int>(i);
      state.has_views = true;
      // The output and whatever shares its storage (views of it) move to the input's storage.
      for (size_t t = 0; t < model.tensors.size(); ++t)
        if (state.storage_of[t] == static_cast<int32_t>(out)) state.storage_of[t] = static_cast<int32_t>(root);
      state.last_use[root] = std::max(state.last_use[root], state.last_use[out]);
      break;
    }
  }
}

// Splits the layers into segments after each data-dependent layer that the executor runs (one
// that runs during shape propagation learns its shapes there).
void mark_segments(EngineState& state) {
  const auto& model = state.model;
  state.segment_ends.clear();
  state.segment_of.assign(model.tensors.size(), 0);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    PreparedLayer& prepared = state.layers[l];
    const auto segment = static_cast<int32_t>(state.segment_ends.size());
    for (int32_t out : model.layers[l].outputs) state.segment_of[static_cast<size_t>(out)] = segment;
    prepared.ends_segment = prepared.def->data_dependent_shapes && !prepared.computes_shape_values;
    state.data_dependent |= prepared.ends_segment;
    if (prepared.ends_segment && l + 1 < model.layers.size()) state.segment_ends.push_back(l + 1);
  }
  state.segment_ends.push_back(model.layers.size());
  state.output_shape_data_dependent.assign(model.outputs.size(), false);
  for (size_t o = 0; o < model.outputs.size(); ++o) {
    const auto t = model.outputs[o].tensor;
    state.output_shape_data_dependent[o] =
        state.segment_of[t] > 0 || state.layers[static_cast<size_t>(state.producer[t])].ends_segment;
  }
}

// `backend`: the engine's, or null when this runtime lacks it (check_loadable_off_device).
void prepare(EngineState& state, const backends::Backend* backend) {
  const auto& model = state.model;
  // Ops and kernels: an engine from a newer kiln may use ops this runtime lacks.
  std::vector<std::string> missing;
  state.layers.resize(model.layers.size());
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const format::Layer& layer = model.layers[l];
    PreparedLayer& prepared = state.layers[l];
    prepared.def = ops::find_op(layer.op);
    prepared.kernel = cpu::cpu_kernels().find(layer.op);
    for (size_t i = 0; i < layer.inputs.size() && i < 64; ++i) {
      const int32_t t = layer.inputs[i];
      if (t >= 0 && static_cast<size_t>(t) < model.tensors.size() &&
          model.tensors[static_cast<size_t>(t)].kind == format::TensorKind::kWeight) {
        prepared.weight_inputs |= uint64_t{1} << i;
      }
    }
    if (!prepared.def) missing.push_back("layer '" + layer.name + "' (op '" + layer.op + "')");
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& m : missing) list += "\n  " + m;
    fail(ErrorCode::kUnsupported, state.source, ": this runtime (kiln ", KILN_VERSION,
         ") does not know the op of ", missing.size(), " layer(s):", list);
  }
  plugins::check_engine_plugins(model, state.source);

  state.producer.assign(model.tensors.size(), -1);
  state.first_use.assign(model.tensors.size(), -1);
  state.last_use.assign(model.tensors.size(), -1);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const auto index = static_cast<int32_t>(l);
    for (int32_t out : model.layers[l].outputs) {
      const auto t = static_cast<size_t>(out);
      const auto kind = model.tensors[t].kind;
      if (kind == format::TensorKind::kInput || kind == format::TensorKind::kWeight) {
        fail(ErrorCode::kCorruptFile, state.source, ": layer '", model.layers[l].name, "' writes ",
             kind == format::TensorKind::kInput ? "input" : "weight", " tensor '", model.tensors[t].name, "'");
      }
      if (state.producer[t] >= 0) {
        fail(ErrorCode::kCorruptFile, state.source, ": tensor '", model.tensors[t].name, "' is written by two layers");
      }
      state.producer[t] = index;
      state.first_use[t] = index;
      state.last_use[t] = index;
    }
    for (int32_t in : model.layers[l].inputs) {
      if (in < 0) continue;
      const auto t = static_cast<size_t>(in);
      const auto kind = model.tensors[t].kind;
      if ((kind == format::TensorKind::kActivation || kind == format::TensorKind::kOutput) && state.producer[t] < 0) {
        fail(ErrorCode::kCorruptFile, state.source, ": layer '", model.layers[l].name, "' reads tensor '",
             model.tensors[t].name, "' before any layer writes it");
      }
      state.last_use[t] = std::max(state.last_use[t], index);
    }
  }
  for (const format::Binding& out : model.outputs) {
    if (state.producer[out.tensor] < 0) {
      fail(ErrorCode::kCorruptFile, state.source, ": output '", out.name, "' is not written by any layer");
    }
  }
  for (const format::Binding& b : model.inputs) state.inputs.push_back(describe_binding(model, b));
  for (const format::Binding& b : model.outputs) state.outputs.push_back(describe_binding(model, b));
  mark_shape_value_layers(state);

  for (const format::Binding& out : model.outputs) {
    state.has_shape_value_outputs |= state.layers[static_cast<size_t>(state.producer[out.tensor])].computes_shape_values;
  }
  mark_segments(state);
  for (size_t o = 0; o < state.outputs.size(); ++o) state.outputs[o].data_dependent_shape = state.output_shape_data_dependent[o];
  // Views share their input's arena, which a later segment's arena is not: engines with
  // data-dependent shapes copy instead.
  if (state.has_data_dependent_shapes()) {
    state.storage_of.resize(model.tensors.size());
    for (size_t t = 0; t < model.tensors.size(); ++t) state.storage_of[t] = static_cast<int32_t>(t);
  } else {
    mark_view_layers(state);
    if (backend) mark_in_place_layers(state, *backend);
  }
  // The host runs the shape-value layers of every engine, with its backend's kernels. When that
  // backend runs the engine, its own check (in bind) covers every layer, these included.
  const backends::Backend& host = backends::host_backend();
  if (backend != &host) {
    for (size_t l = 0; l < model.layers.size(); ++l) {
      if (state.layers[l].computes_shape_values && !host.supports(model, model.layers[l])) {
        missing.push_back("layer '" + model.layers[l].name + "' (op '" + model.layers[l].op + "')");
      }
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& m : missing) list += "\n  " + m;
    fail(ErrorCode::kUnsupported, state.source, ": this runtime (kiln ", KILN_VERSION, ") has no ", host.name(),
         " kernel for ", missing.size(), " layer(s):", list);
  }
}

std::shared_ptr<const EngineState> load_state(format::EngineModel model, std::string source, const DeviceSpec& device) {
  auto state = std::make_shared<EngineState>();
  state->model = std::move(model);
  state->source = std::move(source);
  state->backend = &backends::backend_for(state->model.target, state->source);
  state->backend->check_device(state->source, device);
  prepare(*state, state->backend);
  state->bound = state->backend->bind(*state, device);
  state->memory_limit = state->bound->memory_limit();
  return state;
}

}  // namespace

std::vector<std::string> check_loadable_off_device(const format::EngineModel& model, const std::string& source) {
  EngineState state;
  state.model = model;
  state.source = source;
  // A runtime without the engine's backend checks what the host runs (the builder says whether
  // it can build for that target at all).
  state.backend = backends::find_backend(state.model.target.backend);
  prepare(state, state.backend);
  if (!state.backend) return {};
  state.backend->check_loadable(state);
  return state.backend->host_layers(state);
}

}  // namespace detail

Engine Engine::load_file(const std::string& path, DeviceSpec device) {
  return Engine(detail::load_state(format::read_engine_file(path), path, device));
}

Engine Engine::load_bytes(const void* data, size_t size, DeviceSpec device) {
  if (!data && size) fail(ErrorCode::kInvalidArgument, "Engine::load_bytes: null data with size ", size);
  const auto* begin = static_cast<const uint8_t*>(data);
  auto bytes = std::make_shared<const std::vector<uint8_t>>(begin, begin + size);
  return Engine(detail::load_state(format::read_engine(bytes, "<bytes>"), "<bytes>", device));
}

const detail::EngineState& Engine::state() const {
  if (!state_) fail(ErrorCode::kInvalidArgument, "this Engine was moved from; use the Engine it was moved to");
  return *state_;
}

const std::vector<BindingInfo>& Engine::inputs() const { return state().inputs; }
const std::vector<BindingInfo>& Engine::outputs() const { return state().outputs; }
const std::string& Engine::backend() const { return state().model.target.backend; }
std::string Engine::format_version() const {
  return std::to_string(state().model.version.major) + "." + std::to_string(state().model.version.minor);
}
const std::string& Engine::producer() const { return state().model.producer; }
const std::string& Engine::metadata_json() const { return state().model.metadata_json; }
size_t Engine::num_layers() const { return state().model.layers.size(); }

std::string runtime_version() { return KILN_VERSION; }
std::string engine_format_version() {
  return std::to_string(format::kFormatMajor) + "." + std::to_string(format::kFormatMinor);
}

}  // namespace kiln
