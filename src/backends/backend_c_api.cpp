// kiln_backend_supports (include/kiln/kiln.h): Backend::why_unsupported for one layer described by
// its op and tensor dtypes, for front ends that decide what to give kiln (kiln.compile's
// partitioner) without building a test engine.
#include <string>

#include "backends/backend_registry.hpp"
#include "base/error.hpp"
#include "kiln/kiln.h"
#include "runtime/c_api_support.hpp"

namespace kiln::backends {
namespace {

// A one-layer model whose tensors have the given dtypes (negative: an absent optional input).
format::EngineModel describe_layer(const char* op, const int32_t* input_dtypes, size_t num_inputs,
                                   const int32_t* output_dtypes, size_t num_outputs) {
  format::EngineModel model;
  format::Layer layer;
  layer.name = op;
  layer.op = op;
  const auto add = [&](const char* role, size_t i, int32_t code) -> int32_t {
    if (code < 0) return -1;
    if (!is_valid_dtype(code)) {
      fail(ErrorCode::kInvalidArgument, "kiln_backend_supports: ", role, " ", i, " has dtype code ", code,
           ", which is no kiln dtype");
    }
    format::TensorDesc tensor;
    tensor.name = std::string(role) + std::to_string(i);
    tensor.dtype = static_cast<DType>(code);
    model.tensors.push_back(tensor);
    return static_cast<int32_t>(model.tensors.size() - 1);
  };
  for (size_t i = 0; i < num_inputs; ++i) layer.inputs.push_back(add("input", i, input_dtypes[i]));
  for (size_t i = 0; i < num_outputs; ++i) {
    const int32_t id = add("output", i, output_dtypes[i]);
    if (id < 0) fail(ErrorCode::kInvalidArgument, "kiln_backend_supports: output ", i, " has a negative dtype code");
    layer.outputs.push_back(id);
  }
  model.layers.push_back(std::move(layer));
  return model;
}

}  // namespace
}  // namespace kiln::backends

kiln_status kiln_backend_supports(const char* backend, const char* op, const int32_t* input_dtypes,
                                  size_t num_inputs, const int32_t* output_dtypes, size_t num_outputs,
                                  const char** reason) {
  thread_local std::string answer;
  return kiln::capi::guarded(__func__, [&] {
    using kiln::ErrorCode;
    if (backend == nullptr || op == nullptr || reason == nullptr || (num_inputs > 0 && input_dtypes == nullptr) ||
        (num_outputs > 0 && output_dtypes == nullptr)) {
      kiln::fail(ErrorCode::kInvalidArgument, "kiln_backend_supports: a NULL argument");
    }
    const kiln::backends::Backend* found = kiln::backends::find_backend(backend);
    if (!found) {
      std::string names;
      for (const std::string& name : kiln::backends::backend_names()) names += (names.empty() ? "" : ", ") + name;
      kiln::fail(ErrorCode::kNotFound, "kiln_backend_supports: no backend '", backend, "' in this runtime (it has ",
                 names, "): this kiln runtime ", kiln::backends::why_absent(backend));
    }
    const kiln::format::EngineModel model =
        kiln::backends::describe_layer(op, input_dtypes, num_inputs, output_dtypes, num_outputs);
    answer = found->why_unsupported(model, model.layers[0]);
    *reason = answer.c_str();
  });
}
