#include "torch/execute_engine.hpp"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>

#include "torch/cuda_stream.hpp"
#include "torch/torch_dtype.hpp"
#include "torch/torch_errors.hpp"

namespace kiln::torch_integration {
namespace {

constexpr const char* kOp = "kiln::execute_engine";

std::string shape_string(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << '[';
  for (size_t d = 0; d < sizes.size(); ++d) out << (d ? ", " : "") << sizes[d];
  out << ']';
  return out.str();
}

// "[-1 (1..8), 3]": the binding's shape with the range of each dynamic dim.
std::string binding_shape_string(const BindingInfo& binding) {
  std::ostringstream out;
  out << '[';
  for (size_t d = 0; d < binding.shape.size(); ++d) {
    out << (d ? ", " : "") << binding.shape[d];
    if (binding.shape[d] == kDynamicDim)
      out << " (" << binding.min_shape[d] << ".." << binding.max_shape[d] << ')';
  }
  out << ']';
  return out.str();
}

void check_shape(size_t index, const BindingInfo& binding, const at::Tensor& input) {
  const c10::IntArrayRef sizes = input.sizes();
  bool matches = sizes.size() == binding.shape.size();
  for (size_t d = 0; matches && d < sizes.size(); ++d) {
    matches = binding.shape[d] == kDynamicDim
                  ? sizes[d] >= binding.min_shape[d] && sizes[d] <= binding.max_shape[d]
                  : sizes[d] == binding.shape[d];
  }
  TORCH_CHECK(matches, kOp, ": input ", index, " ('", binding.name, "'): expected shape ",
              binding_shape_string(binding), ", got ", shape_string(sizes));
}

// The input as the runtime needs it: on the engine's device, dense.
at::Tensor prepare_input(size_t index, const BindingInfo& binding, const at::Tensor& input,
                         c10::Device device, bool safe_mode) {
  TORCH_CHECK(input.defined(), kOp, ": input ", index, " ('", binding.name,
              "') is an undefined tensor");
  const std::optional<DType> dtype = from_torch_dtype(input.scalar_type());
  TORCH_CHECK(dtype == binding.dtype, kOp, ": input ", index, " ('", binding.name,
              "'): expected dtype ", dtype_name(binding.dtype), ", got ", input.scalar_type());
  check_shape(index, binding, input);
  at::Tensor placed = input;
  if (input.device() != device) {
    TORCH_CHECK(safe_mode, kOp, ": input ", index, " ('", binding.name, "') is on ", input.device(),
                " but the engine runs on ", device, "; move the input there",
                device.is_cuda()
                    ? " or turn on multi-device safe mode (kiln.runtime.set_multi_device_safe_mode)"
                    : "");
    placed = input.to(device);
  }
  return placed.contiguous();
}

}  // namespace

std::vector<at::Tensor> execute_engine(at::TensorList inputs,
                                       c10::intrusive_ptr<TorchEngine> engine) {
  TORCH_CHECK(engine, kOp, ": the engine is null");
  const kiln::Engine& kengine = engine->engine();
  const std::vector<BindingInfo>& in_bindings = kengine.inputs();
  const std::vector<BindingInfo>& out_bindings = kengine.outputs();
  if (inputs.size() != in_bindings.size()) {
    std::string names;
    for (const BindingInfo& b : in_bindings) names += (names.empty() ? "'" : ", '") + b.name + "'";
    TORCH_CHECK(false, kOp, ": the engine takes ", in_bindings.size(), " input(s) (", names,
                "), got ", inputs.size());
  }
  const c10::Device device = engine->device();
  const bool safe_mode = kiln::get_multi_device_safe_mode();

  std::vector<at::Tensor> dense(inputs.size());
  std::vector<NamedTensor> named_inputs(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    dense[i] = prepare_input(i, in_bindings[i], inputs[i], device, safe_mode);
    Shape shape(dense[i].sizes().begin(), dense[i].sizes().end());
    named_inputs[i] =
        NamedTensor{in_bindings[i].name,
                    TensorRef{in_bindings[i].dtype, std::move(shape), dense[i].data_ptr()}};
  }

  auto context = engine->lease_context();
  const std::vector<Shape> shapes =
      rethrow_kiln_errors(kOp, [&] { return context->output_shapes(named_inputs); });
  std::vector<at::Tensor> outputs(out_bindings.size());
  // An output written after a data-dependent layer may have no size bound before the run (a dim
  // of -1, e.g. rows of NonZero's result feeding another layer). A CPU engine then allocates its
  // outputs itself, and they are copied into tensors of their actual shapes.
  const bool unbounded = std::any_of(shapes.begin(), shapes.end(), [](const Shape& shape) {
    return std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 0; });
  });
  if (unbounded && !device.is_cuda()) {
    std::vector<Tensor> results = rethrow_kiln_errors(kOp, [&] { return context->execute(named_inputs); });
    for (size_t o = 0; o < out_bindings.size(); ++o) {
      outputs[o] = at::empty(c10::IntArrayRef(results[o].shape),
                             at::TensorOptions().dtype(to_torch_dtype(out_bindings[o].dtype)).device(device));
      if (!results[o].bytes.empty()) std::memcpy(outputs[o].data_ptr(), results[o].bytes.data(), results[o].bytes.size());
    }
    return outputs;
  }
  TORCH_CHECK(!unbounded, kOp, ": an output of this cuda engine has no size bound before the run");
  std::vector<NamedTensor> named_outputs(out_bindings.size());
  for (size_t o = 0; o < out_bindings.size(); ++o) {
    outputs[o] =
        at::empty(c10::IntArrayRef(shapes[o]),
                  at::TensorOptions().dtype(to_torch_dtype(out_bindings[o].dtype)).device(device));
    named_outputs[o] = NamedTensor{
        out_bindings[o].name, TensorRef{out_bindings[o].dtype, shapes[o], outputs[o].data_ptr()}};
  }
  void* stream = device.is_cuda() ? current_cuda_stream(device.index()) : nullptr;
  rethrow_kiln_errors(kOp, [&] { context->execute(named_inputs, named_outputs, stream); });
  // A data-dependent output was written row-major from the start of its upper-bound buffer:
  // return the part the run produced, in its actual shape.
  bool any_data_dependent = false;
  for (const BindingInfo& b : out_bindings) any_data_dependent |= b.data_dependent_shape;
  if (any_data_dependent) {
    const std::vector<Shape> actual = rethrow_kiln_errors(kOp, [&] { return context->last_output_shapes(); });
    for (size_t o = 0; o < out_bindings.size(); ++o) {
      if (!out_bindings[o].data_dependent_shape) continue;
      int64_t count = 1;
      for (const int64_t dim : actual[o]) count *= dim;
      outputs[o] = outputs[o].view({-1}).narrow(0, 0, count).view(c10::IntArrayRef(actual[o]));
    }
  }
  return outputs;
}

}  // namespace kiln::torch_integration
