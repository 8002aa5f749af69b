// The runtime's C API: opaque handles over kiln::Engine / kiln::ExecutionContext. Every handle the
// API returns is recorded in the registry of live handles (c_api_handles.hpp) and checked there by
// every call before it is touched.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "kiln/kiln.h"
#include "kiln/runtime.hpp"
#include "runtime/c_api_handles.hpp"
#include "runtime/c_api_support.hpp"

struct kiln_engine {
  kiln::Engine engine;
};

struct kiln_context {
  kiln::ExecutionContext context;
  std::vector<kiln::Tensor> outputs;
  std::vector<kiln::Shape> last_output_shapes;  // of the last execute of either kind
};

namespace {

using kiln::ErrorCode;
using kiln::capi::guarded;
using kiln::capi::HandleKind;

template <typename T>
void require_non_null(const T* pointer, const char* what) {
  if (!pointer) kiln::fail(ErrorCode::kInvalidArgument, what, " must not be NULL");
}

// -1: the most compatible device; an ordinal: that GPU.
kiln::DeviceSpec device_spec(int device) {
  if (device < -1) kiln::fail(ErrorCode::kInvalidArgument, "device must be -1 (any) or a CUDA ordinal, got ", device);
  kiln::DeviceSpec spec;
  if (device >= 0) {
    spec.kind = kiln::DeviceSpec::Kind::kCuda;
    spec.index = device;
  }
  return spec;
}

kiln::DType dtype_from_c(kiln_dtype dtype) {
  if (!kiln::is_valid_dtype(static_cast<int>(dtype))) {
    kiln::fail(ErrorCode::kInvalidArgument, "unknown kiln_dtype value ", static_cast<int>(dtype));
  }
  return static_cast<kiln::DType>(dtype);
}

// Converts C tensors to NamedTensors, validating what C cannot (NULLs, ranks, negative dims).
std::vector<kiln::NamedTensor> named_tensors(size_t count, const char* const* names, const kiln_tensor* tensors,
                                             const char* role) {
  if (count > 0) {
    require_non_null(names, "names");
    require_non_null(tensors, "tensors");
  }
  std::vector<kiln::NamedTensor> bound(count);
  for (size_t i = 0; i < count; ++i) {
    if (!names[i]) kiln::fail(ErrorCode::kInvalidArgument, role, " name ", i, " is NULL");
    const kiln_tensor& t = tensors[i];
    if (t.ndim < 0 || t.ndim > 16) kiln::fail(ErrorCode::kInvalidArgument, role, " '", names[i], "': ndim ", t.ndim);
    if (t.ndim > 0 && !t.shape) kiln::fail(ErrorCode::kInvalidArgument, role, " '", names[i], "': shape is NULL");
    bound[i].name = names[i];
    bound[i].tensor.dtype = dtype_from_c(t.dtype);
    bound[i].tensor.shape.assign(t.shape, t.shape + t.ndim);
    for (int64_t d : bound[i].tensor.shape) {
      if (d < 0) kiln::fail(ErrorCode::kInvalidArgument, role, " '", names[i], "': negative dimension ", d);
    }
    bound[i].tensor.data = t.data;
  }
  return bound;
}

// The live engine behind `engine`, or kInvalidArgument naming `call`.
const kiln::Engine& live_engine(const kiln_engine* engine, const char* call) {
  kiln::capi::require_live_handle(engine, HandleKind::kEngine, call, "engine");
  return engine->engine;
}

template <typename Context>
Context* live_context(Context* context, const char* call) {
  kiln::capi::require_live_handle(context, HandleKind::kContext, call, "context");
  return context;
}

// Hands a new engine to the caller: registered as live before *out sees it.
void publish(kiln::Engine engine, kiln_engine** out) {
  auto handle = std::make_unique<kiln_engine>(kiln_engine{std::move(engine)});
  kiln::capi::register_handle(handle.get(), HandleKind::kEngine);
  *out = handle.release();
}

// Releases a handle of `kind`: NULL is ignored; one that is not live is left alone and reported
// through kiln_last_error (release returns nothing).
template <typename Handle>
void release(Handle* handle, HandleKind kind, const char* call, const char* kind_name) noexcept {
  kiln::capi::clear_last_error();
  if (!handle) return;
  if (!kiln::capi::unregister_handle(handle, kind)) {
    kiln::capi::set_message_noexcept(call, ": not a live ", kind_name,
                                     " (released already, or never returned by kiln); nothing released");
    return;
  }
  delete handle;
}

// More tensors than the engine has bindings of that role can never be a valid call; refusing them
// first keeps a wild count from sizing anything. Among the first bindings + 1 names one is unknown
// or repeated, so the message names it without reading further.
void require_at_most(size_t count, const char* const* names, const std::vector<kiln::BindingInfo>& bindings,
                     const char* role, const char* call) {
  if (count <= bindings.size()) return;
  std::string culprit;
  std::vector<std::string_view> seen;
  for (size_t i = 0; names && i <= bindings.size() && culprit.empty(); ++i) {
    if (!names[i]) {
      culprit = std::string(role) + " name " + std::to_string(i) + " is NULL";
      break;
    }
    const std::string_view name = names[i];
    const bool known = std::any_of(bindings.begin(), bindings.end(), [&](const auto& b) { return b.name == name; });
    if (!known) {
      culprit = "unknown " + std::string(role) + " '" + std::string(name) + "'";
    } else if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      culprit = std::string(role) + " '" + std::string(name) + "' is bound twice";
    }
    seen.push_back(name);
  }
  kiln::fail(ErrorCode::kInvalidArgument, call, ": ", count, " ", role, "s given; the engine has ", bindings.size(),
             " ", role, "(s)", culprit.empty() ? "" : ": ", culprit);
}

const std::vector<kiln::BindingInfo>& bindings_of(const kiln_engine* engine, int is_input) {
  return is_input ? engine->engine.inputs() : engine->engine.outputs();
}

}  // namespace

extern "C" {

const char* kiln_last_error(void) { return kiln::capi::last_error(); }

const char* kiln_runtime_version(void) { return KILN_VERSION; }

const char* kiln_engine_format_version(void) {
  static const std::string version = kiln::engine_format_version();
  return version.c_str();
}

kiln_status kiln_engine_load_file(const char* path, kiln_engine** out) {
  return guarded(__func__, [&] {
    require_non_null(path, "path");
    require_non_null(out, "out");
    *out = nullptr;
    publish(kiln::Engine::load_file(path), out);
  });
}

kiln_status kiln_engine_load_bytes(const void* data, size_t size, kiln_engine** out) {
  return guarded(__func__, [&] {
    require_non_null(data, "data");
    require_non_null(out, "out");
    *out = nullptr;
    publish(kiln::Engine::load_bytes(data, size), out);
  });
}

kiln_status kiln_engine_load_file_on_device(const char* path, int device, kiln_engine** out) {
  return guarded(__func__, [&] {
    require_non_null(path, "path");
    require_non_null(out, "out");
    *out = nullptr;
    publish(kiln::Engine::load_file(path, device_spec(device)), out);
  });
}

kiln_status kiln_engine_load_bytes_on_device(const void* data, size_t size, int device, kiln_engine** out) {
  return guarded(__func__, [&] {
    require_non_null(data, "data");
    require_non_null(out, "out");
    *out = nullptr;
    publish(kiln::Engine::load_bytes(data, size, device_spec(device)), out);
  });
}

void kiln_engine_release(kiln_engine* engine) { release(engine, HandleKind::kEngine, __func__, "kiln_engine"); }

kiln_status kiln_engine_num_bindings(const kiln_engine* engine, int is_input, size_t* count) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_engine(engine, call);
    require_non_null(count, "count");
    *count = bindings_of(engine, is_input).size();
  });
}

kiln_status kiln_engine_binding(const kiln_engine* engine, int is_input, size_t index, const char** name,
                                kiln_dtype* dtype, int32_t* ndim, const int64_t** shape) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_engine(engine, call);
    const auto& bindings = bindings_of(engine, is_input);
    if (index >= bindings.size()) {
      kiln::fail(ErrorCode::kInvalidArgument, is_input ? "input" : "output", " binding index ", index,
                 " is out of range (the engine has ", bindings.size(), ")");
    }
    const kiln::BindingInfo& b = bindings[index];
    if (name) *name = b.name.c_str();
    if (dtype) *dtype = static_cast<kiln_dtype>(b.dtype);
    if (ndim) *ndim = static_cast<int32_t>(b.shape.size());
    if (shape) *shape = b.shape.data();
  });
}

kiln_status kiln_engine_backend(const kiln_engine* engine, const char** backend) {
  const char* call = __func__;
  return guarded(call, [&] {
    const kiln::Engine& e = live_engine(engine, call);
    require_non_null(backend, "backend");
    *backend = e.backend().c_str();
  });
}

kiln_status kiln_engine_metadata(const kiln_engine* engine, const char** json) {
  const char* call = __func__;
  return guarded(call, [&] {
    const kiln::Engine& e = live_engine(engine, call);
    require_non_null(json, "json");
    *json = e.metadata_json().c_str();
  });
}

kiln_status kiln_context_create(const kiln_engine* engine, kiln_context** out) {
  const char* call = __func__;
  return guarded(call, [&] {
    const kiln::Engine& e = live_engine(engine, call);
    require_non_null(out, "out");
    *out = nullptr;
    auto handle = std::make_unique<kiln_context>(kiln_context{e.create_context(), {}, {}});
    kiln::capi::register_handle(handle.get(), HandleKind::kContext);
    *out = handle.release();
  });
}

void kiln_context_release(kiln_context* context) {
  release(context, HandleKind::kContext, __func__, "kiln_context");
}

kiln_status kiln_context_execute(kiln_context* context, size_t num_inputs, const char* const* names,
                                 const kiln_tensor* inputs, void* stream) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    if (stream) {
      kiln::fail(ErrorCode::kInvalidArgument, call,
                 ": stream must be NULL: this call takes host tensors and returns once the outputs are on "
                 "the host (a CUDA engine runs on the context's own stream); to enqueue on a stream of yours, "
                 "use kiln_context_execute_bound");
    }
    require_at_most(num_inputs, names, context->context.engine().inputs(), "input", call);
    std::vector<kiln::NamedTensor> bound = named_tensors(num_inputs, names, inputs, "input");
    context->outputs.clear();
    context->last_output_shapes.clear();
    context->outputs = context->context.execute(bound);
    context->last_output_shapes = context->context.last_output_shapes();
  });
}

kiln_status kiln_context_execute_bound(kiln_context* context, size_t num_inputs, const char* const* input_names,
                                       const kiln_tensor* inputs, size_t num_outputs,
                                       const char* const* output_names, const kiln_tensor* outputs,
                                       void* stream) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    require_at_most(num_inputs, input_names, context->context.engine().inputs(), "input", call);
    require_at_most(num_outputs, output_names, context->context.engine().outputs(), "output", call);
    const std::vector<kiln::NamedTensor> in = named_tensors(num_inputs, input_names, inputs, "input");
    const std::vector<kiln::NamedTensor> out = named_tensors(num_outputs, output_names, outputs, "output");
    context->last_output_shapes.clear();
    context->context.execute(in, out, stream);
    context->last_output_shapes = context->context.last_output_shapes();
  });
}

kiln_status kiln_context_set_cuda_graphs(kiln_context* context, int enabled) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    context->context.set_cuda_graphs(enabled != 0);
  });
}

kiln_status kiln_context_set_threads(kiln_context* context, int threads) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    context->context.set_threads(threads);
  });
}

kiln_status kiln_context_threads(const kiln_context* context, int* threads) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    require_non_null(threads, "threads");
    *threads = context->context.threads();
  });
}

int kiln_set_multi_device_safe_mode(int enabled) { return kiln::set_multi_device_safe_mode(enabled != 0) ? 1 : 0; }
int kiln_get_multi_device_safe_mode(void) { return kiln::get_multi_device_safe_mode() ? 1 : 0; }

kiln_status kiln_context_output(const kiln_context* context, const char* name, kiln_tensor* out) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    require_non_null(name, "name");
    require_non_null(out, "out");
    const auto& bindings = context->context.engine().outputs();
    for (size_t i = 0; i < bindings.size(); ++i) {
      if (bindings[i].name != name) continue;
      if (i >= context->outputs.size()) {
        kiln::fail(ErrorCode::kInvalidArgument, "output '", name, "' is not available: execute the context first");
      }
      const kiln::Tensor& t = context->outputs[i];
      out->dtype = static_cast<kiln_dtype>(t.dtype);
      out->ndim = static_cast<int32_t>(t.shape.size());
      out->shape = t.shape.data();
      out->data = const_cast<uint8_t*>(t.bytes.data());
      return;
    }
    kiln::fail(ErrorCode::kInvalidArgument, "unknown output '", name, "'");
  });
}

kiln_status kiln_context_output_shape(const kiln_context* context, const char* name, int32_t* ndim,
                                      const int64_t** shape) {
  const char* call = __func__;
  return guarded(call, [&] {
    live_context(context, call);
    require_non_null(name, "name");
    require_non_null(ndim, "ndim");
    require_non_null(shape, "shape");
    const auto& bindings = context->context.engine().outputs();
    for (size_t i = 0; i < bindings.size(); ++i) {
      if (bindings[i].name != name) continue;
      if (i >= context->last_output_shapes.size()) {
        kiln::fail(ErrorCode::kInvalidArgument, "output '", name, "' has no shape yet: execute the context first");
      }
      *ndim = static_cast<int32_t>(context->last_output_shapes[i].size());
      *shape = context->last_output_shapes[i].data();
      return;
    }
    kiln::fail(ErrorCode::kInvalidArgument, "unknown output '", name, "'");
  });
}

}  // extern "C"
