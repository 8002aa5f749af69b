#include "format/engine_validate.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <set>
#include <string_view>

#include "base/checked_math.hpp"
#include "base/error.hpp"
#include "base/json.hpp"
#include "format/cubin_image.hpp"
#include "format/engine_schema.hpp"

namespace kiln::format {

namespace {

bool is_valid_tensor_kind(TensorKind kind) {
  switch (kind) {
    case TensorKind::kInput:
    case TensorKind::kOutput:
    case TensorKind::kWeight:
    case TensorKind::kActivation:
      return true;
  }
  return false;
}

std::string_view tensor_kind_name(TensorKind kind) {
  switch (kind) {
    case TensorKind::kInput:
      return "input";
    case TensorKind::kOutput:
      return "output";
    case TensorKind::kWeight:
      return "weight";
    case TensorKind::kActivation:
      return "activation";
  }
  return "unknown";
}

bool is_valid_attribute_kind(Attribute::Kind kind) {
  const auto raw = static_cast<int>(kind);
  return raw >= static_cast<int>(Attribute::Kind::kInt) &&
         raw <= static_cast<int>(Attribute::Kind::kTensor);
}

// Byte size of a static shape, or false when it (or a stride) would not fit in 63 bits.
bool checked_nbytes(const Shape& shape, DType dtype, uint64_t& nbytes) {
  const auto bytes = byte_size_no_overflow(shape, dtype);
  if (!bytes) return false;
  nbytes = static_cast<uint64_t>(*bytes);
  return true;
}

class Validator {
 public:
  Validator(const EngineModel& model, ErrorCode code, const std::string& context)
      : m_(model), code_(code), context_(context) {}

  void run() {
    check_info();
    for (size_t i = 0; i < m_.tensors.size(); ++i) check_tensor(i);
    check_bindings();
    check_kernels();  // before the layers, which name the modules
    for (size_t i = 0; i < m_.layers.size(); ++i) check_layer(i);
    check_memory_plan();
    for (size_t i = 0; i < m_.plugins.size(); ++i) check_plugin(i);
    check_metadata();
  }

 private:
  template <typename... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    kiln::fail(code_, context_, ": ", std::forward<Parts>(parts)...);
  }

  std::string tensor_label(size_t i) const {
    return detail::concat("tensor ", i, " '", m_.tensors[i].name, "'");
  }

  void check_info() const {
    if (!is_valid_dtype(static_cast<int>(m_.precision))) {
      fail("precision: invalid dtype value ", static_cast<int>(m_.precision));
    }
    if (m_.target.backend.empty()) fail("target backend is empty");
    if (m_.target.sm_arch < 0) fail("target sm_arch ", m_.target.sm_arch, " is negative");
  }

  void check_shape(const Shape& shape, bool allow_dynamic, std::string_view where) const {
    if (shape.size() > schema::kMaxRank) {
      fail(where, ": rank ", shape.size(), " exceeds the maximum of ", schema::kMaxRank);
    }
    for (size_t d = 0; d < shape.size(); ++d) {
      const int64_t lowest = allow_dynamic ? kDynamicDim : 0;
      if (shape[d] < lowest) {
        fail(where, ": dimension ", d, " is ", shape[d], ", expected >= ", lowest);
      }
    }
  }

  void check_tensor(size_t i) const {
    const TensorDesc& t = m_.tensors[i];
    const std::string label = tensor_label(i);
    if (!is_valid_dtype(static_cast<int>(t.dtype))) {
      fail(label, ": invalid dtype value ", static_cast<int>(t.dtype));
    }
    if (!is_valid_tensor_kind(t.kind)) {
      fail(label, ": invalid tensor kind ", static_cast<int>(t.kind));
    }
    check_shape(t.shape, /*allow_dynamic=*/true, label);
    // Every size the runtime derives from this tensor must be representable, dynamic dims aside
    // (a static weight's size is checked against its byte range below).
    const bool sized_by_weight_range = t.kind == TensorKind::kWeight && shape_is_static(t.shape);
    if (!sized_by_weight_range && !static_dims_fit(t.shape, t.dtype)) {
      fail(label, ": ", dtype_name(t.dtype), shape_to_string(t.shape),
           " is larger than 2^63 - 1 bytes");
    }
    if (t.kind != TensorKind::kWeight) {
      if (t.weight_offset != 0 || t.weight_size != 0) {
        fail(label, ": a ", tensor_kind_name(t.kind), " tensor has a weight range (offset ",
             t.weight_offset, ", size ", t.weight_size, ")");
      }
      return;
    }
    const uint64_t blob = m_.weights.size();
    if (t.weight_offset % kWeightAlignment != 0) {
      fail(label, ": weight offset ", t.weight_offset, " is not a multiple of ", kWeightAlignment);
    }
    if (t.weight_offset > blob || t.weight_size > blob - t.weight_offset) {
      fail(label, ": weight range [", t.weight_offset, ", ", t.weight_offset, " + ", t.weight_size,
           ") exceeds the ", blob, "-byte weights blob");
    }
    if (shape_is_static(t.shape)) {
      uint64_t expected = 0;
      if (!checked_nbytes(t.shape, t.dtype, expected) || expected != t.weight_size) {
        fail(label, ": weight size ", t.weight_size, " bytes does not match ", dtype_name(t.dtype),
             " ", shape_to_string(t.shape), " (",
             checked_nbytes(t.shape, t.dtype, expected) ? std::to_string(expected) : "overflowing",
             " bytes)");
      }
    }
  }

  void check_tensor_index(int64_t index, bool allow_absent, std::string_view where) const {
    if ((allow_absent && index == -1) ||
        (index >= 0 && static_cast<uint64_t>(index) < m_.tensors.size())) {
      return;
    }
    fail(where, ": tensor index ", index, " is out of range (", m_.tensors.size(), " tensors",
         allow_absent ? ", or -1 for absent" : "", ")");
  }

  // The C API hands binding names out as C strings: a NUL would cut a name short (and could make
  // two bindings look alike), so the file is refused; the message shows the NUL as "\0".
  void check_binding_name(const std::string& name, std::string_view kind, size_t index) const {
    const size_t nul = name.find('\0');
    if (nul == std::string::npos) return;
    std::string shown = name;
    for (size_t at = nul; at != std::string::npos; at = shown.find('\0', at)) {
      shown.replace(at, 1, "\\0");
    }
    fail(kind, index, " '", shown, "': the name contains a NUL byte");
  }

  void check_bindings() const {
    std::set<std::string_view> names;
    std::vector<int> input_bindings(m_.tensors.size(), 0);
    std::vector<int> output_bindings(m_.tensors.size(), 0);
    for (size_t b = 0; b < m_.inputs.size(); ++b) {
      const Binding& binding = m_.inputs[b];
      check_binding_name(binding.name, "input binding ", b);
      const std::string label = detail::concat("input binding ", b, " '", binding.name, "'");
      if (binding.name.empty()) fail(label, ": empty name");
      if (!names.insert(binding.name).second) fail(label, ": duplicate input name");
      check_tensor_index(binding.tensor, false, label);
      const TensorDesc& t = m_.tensors[binding.tensor];
      if (t.kind != TensorKind::kInput) {
        fail(label, ": bound to ", tensor_label(binding.tensor), " of kind ",
             tensor_kind_name(t.kind), ", expected an input tensor");
      }
      ++input_bindings[binding.tensor];
      if (binding.ranges.size() != t.shape.size()) {
        fail(label, ": ", binding.ranges.size(), " dimension ranges for a rank-", t.shape.size(),
             " tensor");
      }
      for (size_t d = 0; d < t.shape.size(); ++d) {
        const DimRange& r = binding.ranges[d];
        if (r.min < 0 || r.min > r.opt || r.opt > r.max) {
          fail(label, ": dimension ", d, " range (min ", r.min, ", opt ", r.opt, ", max ", r.max,
               ") is not 0 <= min <= opt <= max");
        }
        if (t.shape[d] != kDynamicDim && (r.min != t.shape[d] || r.max != t.shape[d])) {
          fail(label, ": static dimension ", d, " is ", t.shape[d], " but its range is (", r.min,
               ", ", r.opt, ", ", r.max, ")");
        }
      }
      Shape max_shape(t.shape.size());
      for (size_t d = 0; d < t.shape.size(); ++d) max_shape[d] = binding.ranges[d].max;
      if (!byte_size_no_overflow(max_shape, t.dtype)) {
        fail(label, ": the largest allowed shape ", dtype_name(t.dtype), shape_to_string(max_shape),
             " is larger than 2^63 - 1 bytes");
      }
    }
    names.clear();
    for (size_t b = 0; b < m_.outputs.size(); ++b) {
      const Binding& binding = m_.outputs[b];
      check_binding_name(binding.name, "output binding ", b);
      const std::string label = detail::concat("output binding ", b, " '", binding.name, "'");
      if (binding.name.empty()) fail(label, ": empty name");
      if (!names.insert(binding.name).second) fail(label, ": duplicate output name");
      check_tensor_index(binding.tensor, false, label);
      ++output_bindings[binding.tensor];
      if (!binding.ranges.empty()) {
        fail(label, ": output bindings carry no dimension ranges, got ", binding.ranges.size());
      }
    }
    for (size_t i = 0; i < m_.tensors.size(); ++i) {
      if (m_.tensors[i].kind == TensorKind::kInput && input_bindings[i] != 1) {
        fail(tensor_label(i), ": an input tensor needs exactly one input binding, has ",
             input_bindings[i]);
      }
      if (m_.tensors[i].kind == TensorKind::kOutput && output_bindings[i] == 0) {
        fail(tensor_label(i), ": an output tensor has no output binding");
      }
    }
  }

  void check_attributes(const AttributeMap& attrs, std::string_view owner) const {
    for (const auto& [name, attr] : attrs.items()) {
      const std::string label = detail::concat(owner, ", attribute '", name, "'");
      if (!is_valid_attribute_kind(attr.kind)) {
        fail(label, ": invalid attribute kind ", static_cast<int>(attr.kind));
      }
      if (attr.kind != Attribute::Kind::kTensor) continue;
      if (!attr.tensor) fail(label, ": tensor attribute without a tensor");
      const HostTensor& t = *attr.tensor;
      if (!is_valid_dtype(static_cast<int>(t.dtype))) {
        fail(label, ": invalid dtype value ", static_cast<int>(t.dtype));
      }
      check_shape(t.shape, /*allow_dynamic=*/false, label);
      uint64_t expected = 0;
      if (!checked_nbytes(t.shape, t.dtype, expected) || expected != t.bytes.size()) {
        fail(label, ": ", t.bytes.size(), " data bytes do not match ", dtype_name(t.dtype), " ",
             shape_to_string(t.shape));
      }
    }
  }

  void check_layer(size_t i) const {
    const Layer& layer = m_.layers[i];
    const std::string label = detail::concat("layer ", i, " '", layer.name, "'");
    if (layer.op.empty()) fail(label, ": empty op type");
    for (size_t k = 0; k < layer.inputs.size(); ++k) {
      check_tensor_index(layer.inputs[k], true, detail::concat(label, ", input ", k));
    }
    for (size_t k = 0; k < layer.outputs.size(); ++k) {
      const int32_t index = layer.outputs[k];
      check_tensor_index(index, false, detail::concat(label, ", output ", k));
      const TensorKind kind = m_.tensors[index].kind;
      if (kind != TensorKind::kActivation && kind != TensorKind::kOutput) {
        fail(label, ", output ", k, ": writes ", tensor_label(index), " of kind ",
             tensor_kind_name(kind), ", expected an activation or output tensor");
      }
    }
    check_attributes(layer.attrs, label);
    if (const Attribute* kernel = layer.attrs.find(kKernelModuleAttribute)) {
      if (kernel->kind != Attribute::Kind::kString) {
        fail(label, ", attribute '", kKernelModuleAttribute, "': expected a string (a kernel ",
             "module's name), got kind ", attribute_kind_name(kernel->kind));
      }
      if (!has_kernel_module(kernel->s)) {
        fail(label, ", attribute '", kKernelModuleAttribute, "': names kernel module '", kernel->s,
             "', but the engine has ",
             m_.kernels.empty() ? std::string("none") : detail::concat(m_.kernels.size(), " (",
                                                                       kernel_names(), ")"));
      }
    }
  }

  void check_memory_plan() const {
    const MemoryPlan& plan = m_.memory_plan;
    const size_t n = m_.tensors.size();
    if (plan.offsets.size() != n || plan.first_use.size() != n || plan.last_use.size() != n) {
      fail("memory plan: offsets/first_use/last_use have ", plan.offsets.size(), "/",
           plan.first_use.size(), "/", plan.last_use.size(), " entries, expected one per tensor (",
           n, ")");
    }
    if (plan.alignment == 0 || !std::has_single_bit(plan.alignment)) {
      fail("memory plan: alignment ", plan.alignment, " is not a power of two");
    }
    const auto layer_count = static_cast<int64_t>(m_.layers.size());
    for (size_t i = 0; i < n; ++i) {
      const int32_t first = plan.first_use[i];
      const int32_t last = plan.last_use[i];
      if (first < -1 || first >= layer_count || last < -1 || last >= layer_count ||
          (first >= 0 && last >= 0 && first > last)) {
        fail("memory plan, ", tensor_label(i), ": use interval [", first, ", ", last,
             "] is invalid for ", layer_count, " layers");
      }
      const TensorDesc& t = m_.tensors[i];
      const uint64_t offset = plan.offsets[i];
      if (t.kind != TensorKind::kActivation) {
        if (offset != MemoryPlan::kNoOffset) {
          fail("memory plan, ", tensor_label(i), ": a ", tensor_kind_name(t.kind),
               " tensor has arena offset ", offset, ", expected none");
        }
        continue;
      }
      if (!plan.is_static) continue;
      uint64_t nbytes = 0;
      if (!shape_is_static(t.shape) || !checked_nbytes(t.shape, t.dtype, nbytes)) {
        fail("memory plan, ", tensor_label(i), ": the plan is marked static but the shape ",
             shape_to_string(t.shape), " is not");
      }
      if (offset % plan.alignment != 0 || offset > plan.arena_size ||
          nbytes > plan.arena_size - offset) {
        fail("memory plan, ", tensor_label(i), ": ", nbytes, " bytes at offset ", offset,
             " do not fit the ", plan.arena_size, "-byte arena at alignment ", plan.alignment);
      }
    }
  }

  void check_plugin(size_t i) const {
    const PluginRef& plugin = m_.plugins[i];
    const std::string label =
        detail::concat("plugin ", i, " '", plugin.plugin_namespace, "::", plugin.name, "'");
    if (plugin.name.empty()) fail(label, ": empty name");
    check_attributes(plugin.fields, label);
  }

  bool has_kernel_module(const std::string& name) const {
    return std::any_of(m_.kernels.begin(), m_.kernels.end(),
                       [&](const KernelModule& module) { return module.name == name; });
  }

  std::string kernel_names() const {
    std::string names;
    for (const KernelModule& module : m_.kernels) {
      names += detail::concat(names.empty() ? "" : ", ", "'", module.name, "'");
    }
    return names;
  }

  void check_kernels() const {
    if (!m_.kernels.empty() && m_.target.backend != "cuda") {
      fail(m_.kernels.size(), " kernel module(s) in an engine for target '", m_.target.backend,
           "': generated kernels are CUDA modules, for cuda engines only");
    }
    std::set<std::string_view> names;
    for (size_t i = 0; i < m_.kernels.size(); ++i) {
      const KernelModule& module = m_.kernels[i];
      const std::string label = detail::concat("kernel module ", i, " '", module.name, "'");
      if (module.name.empty()) fail(label, ": empty name");
      if (!names.insert(module.name).second) fail(label, ": duplicate name");
      if (module.sm_arch != m_.target.sm_arch) {
        fail(label, ": compiled for sm_", module.sm_arch, ", but the engine targets sm_",
             m_.target.sm_arch);
      }
      if (module.cubin.empty()) fail(label, ": empty cubin");
      const std::string problem = cubin_image_problem(module.cubin);
      if (!problem.empty()) {
        fail(label, ": the cubin (", module.cubin.size(), " bytes) is not a CUDA ELF image: ",
             problem);
      }
    }
  }

  // Strict UTF-8 JSON holding an object, so every API can hand it out as text and callers can
  // decode it (Python's json.loads) without an error of their own.
  void check_metadata() const {
    json::ParseOptions options;
    options.source = "section 'metadata'";
    json::Value metadata;
    try {
      metadata = json::parse(m_.metadata_json, options);
    } catch (const Error& e) {
      kiln::fail(code_, context_, ": ", e.what());
    }
    if (!metadata.is_object()) {
      fail("section 'metadata': expected a JSON object, got ", json::type_name(metadata.type()));
    }
  }

  const EngineModel& m_;
  ErrorCode code_;
  const std::string& context_;
};

}  // namespace

void validate_engine_model(const EngineModel& model, ErrorCode code, const std::string& context) {
  Validator(model, code, context).run();
}

}  // namespace kiln::format
