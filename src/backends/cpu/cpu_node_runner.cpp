#include "backends/cpu/cpu_node_runner.hpp"

#include <optional>

#include "base/half.hpp"

namespace kiln::cpu {
namespace {

bool is_half_type(DType t) { return t == DType::kFloat16 || t == DType::kBFloat16; }

void convert_to_float(const TensorView& src, float* dst) {
  const auto* in = src.as<const uint16_t>();
  const int64_t n = src.numel();
  if (src.dtype == DType::kFloat16) {
    for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = bfloat16_to_float(in[i]);
  }
}

void convert_from_float(const float* src, const TensorView& dst) {
  auto* out = dst.as<uint16_t>();
  const int64_t n = dst.numel();
  if (dst.dtype == DType::kFloat16) {
    for (int64_t i = 0; i < n; ++i) out[i] = float_to_half(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = float_to_bfloat16(src[i]);
  }
}

}  // namespace

void invoke_cpu_kernel(const CpuKernel& kernel, KernelContext& ctx) {
  bool needs_conversion = false;
  if (kernel.float_compute) {
    for (const TensorView& t : ctx.inputs) needs_conversion |= t.data && is_half_type(t.dtype);
    for (const TensorView& t : ctx.outputs) needs_conversion |= is_half_type(t.dtype);
  }
  if (!needs_conversion) {
    kernel.fn(ctx);
    return;
  }
  // float16/bfloat16 are computed in float32: convert in, run, convert out.
  std::vector<std::vector<float>> storage;
  storage.reserve(ctx.inputs.size() + ctx.outputs.size());
  std::vector<TensorView> inputs(ctx.inputs.begin(), ctx.inputs.end());
  for (TensorView& t : inputs) {
    if (!t.data || !is_half_type(t.dtype)) continue;
    storage.emplace_back(static_cast<size_t>(t.numel()));
    convert_to_float(t, storage.back().data());
    t.dtype = DType::kFloat32;
    t.data = storage.back().data();
  }
  std::vector<TensorView> outputs(ctx.outputs.begin(), ctx.outputs.end());
  for (TensorView& t : outputs) {
    if (!is_half_type(t.dtype)) continue;
    storage.emplace_back(static_cast<size_t>(t.numel()));
    t.dtype = DType::kFloat32;
    t.data = storage.back().data();
  }
  KernelContext converted{ctx.node_name, ctx.op, ctx.attrs, inputs, outputs, ctx.state, ctx.constant_inputs};
  kernel.fn(converted);
  for (size_t i = 0; i < outputs.size(); ++i) {
    // An op with data-dependent sizes reports what it wrote through its output views' shapes.
    ctx.outputs[i].shape = outputs[i].shape;
    if (is_half_type(ctx.outputs[i].dtype)) convert_from_float(outputs[i].as<const float>(), ctx.outputs[i]);
  }
}

std::vector<HostTensor> run_node_on_cpu(std::string_view node_name, std::string_view op,
                                        const AttributeMap& attrs,
                                        std::span<const HostTensor* const> inputs, size_t num_outputs) {
  const ops::OpDef* def = ops::find_op(op);
  if (!def) fail(ErrorCode::kUnsupported, "node '", node_name, "': op '", op, "' is not supported");
  const CpuKernel* kernel = cpu_kernels().find(op);
  if (!kernel) fail(ErrorCode::kUnsupported, "node '", node_name, "': op '", op, "' has no CPU kernel");

  std::vector<ops::ValueInfo> in_info(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i]) {
      in_info[i] = ops::ValueInfo{inputs[i]->dtype, inputs[i]->shape, inputs[i], true};
    } else {
      in_info[i].present = false;
    }
  }
  std::vector<ops::ValueInfo> out_info(num_outputs);
  ops::infer_node(*def, node_name, attrs, in_info, out_info);

  std::vector<HostTensor> outputs;
  outputs.reserve(num_outputs);
  for (const ops::ValueInfo& info : out_info) {
    if (!shape_is_static(info.shape)) {
      fail(ErrorCode::kInternal, "node '", node_name, "' (", op, "): output shape ",
           shape_to_string(info.shape), " is not static although every input value is known");
    }
    outputs.emplace_back(info.dtype, info.shape);
  }
  std::vector<TensorView> in_views(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i]) in_views[i] = view_of(*inputs[i]);
  }
  std::vector<TensorView> out_views;
  out_views.reserve(outputs.size());
  for (HostTensor& t : outputs) out_views.push_back(view_of(t));
  KernelContext ctx{node_name, op, attrs, in_views, out_views};
  invoke_cpu_kernel(*kernel, ctx);
  return outputs;
}

}  // namespace kiln::cpu
