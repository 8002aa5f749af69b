#include "backends/cpu/nn_layout.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/nn_layout.hpp"

namespace kiln::cpu::nn {
namespace {

// Copies a rank-4 float tensor with its axes reordered: out axis a is input axis perm[a].
HostTensor permute4(const TensorView& in, const std::array<size_t, 4>& perm) {
  Shape out_shape(4);
  for (size_t a = 0; a < 4; ++a) out_shape[a] = in.shape[perm[a]];
  HostTensor out(DType::kFloat32, out_shape);
  const std::vector<int64_t> strides = ops::nn::row_major_strides(in.shape);
  const int64_t s0 = strides[perm[0]], s1 = strides[perm[1]], s2 = strides[perm[2]],
                s3 = strides[perm[3]];
  const float* src = in.as<const float>();
  float* dst = out.data<float>();
  for (int64_t a = 0; a < out_shape[0]; ++a) {
    for (int64_t b = 0; b < out_shape[1]; ++b) {
      for (int64_t c = 0; c < out_shape[2]; ++c) {
        const float* row = src + a * s0 + b * s1 + c * s2;
        for (int64_t d = 0; d < out_shape[3]; ++d) *dst++ = row[d * s3];
      }
    }
  }
  return out;
}

constexpr std::array<size_t, 4> kToNchw{0, 3, 1, 2};
constexpr std::array<size_t, 4> kToNhwc{0, 2, 3, 1};

void require_4d_float(const KernelContext& ctx, const TensorView& t, const char* what,
                      size_t index) {
  if (t.dtype != DType::kFloat32) {
    ctx.fail(ErrorCode::kUnsupported, what, " ", index, " has unsupported dtype ",
             dtype_name(t.dtype), "; supported: float32, float16, bfloat16");
  }
  if (t.shape.size() != 4) {
    ctx.fail(ErrorCode::kInvalidArgument, "kiln_layout \"NHWC\" needs 4-D tensors, ", what, " ",
             index, " is ", shape_to_string(t.shape));
  }
}

}  // namespace

void run_nhwc_as_nchw(KernelContext& ctx, std::initializer_list<size_t> layout_inputs,
                      KernelFn nchw_kernel) {
  std::vector<size_t> permuted_inputs{0};
  permuted_inputs.insert(permuted_inputs.end(), layout_inputs.begin(), layout_inputs.end());
  std::vector<TensorView> inputs(ctx.inputs.begin(), ctx.inputs.end());
  std::vector<HostTensor> storage(inputs.size());
  for (size_t i : permuted_inputs) {
    if (!ctx.has_input(i)) continue;
    require_4d_float(ctx, ctx.inputs[i], "input", i);
    storage[i] = permute4(ctx.inputs[i], kToNchw);
    inputs[i] = view_of(storage[i]);
  }
  if (ctx.outputs.empty()) ctx.fail(ErrorCode::kInvalidArgument, "node has no output");
  require_4d_float(ctx, ctx.outputs[0], "output", 0);
  HostTensor y(DType::kFloat32, ops::nn::nhwc_to_nchw(ctx.outputs[0].shape));
  std::vector<TensorView> outputs(ctx.outputs.begin(), ctx.outputs.end());
  outputs[0] = view_of(y);
  KernelContext nchw{ctx.node_name, ctx.op, ctx.attrs, inputs, outputs};
  nchw_kernel(nchw);
  const HostTensor result = permute4(outputs[0], kToNhwc);
  std::copy(result.bytes.begin(), result.bytes.end(), static_cast<uint8_t*>(ctx.outputs[0].data));
}

}  // namespace kiln::cpu::nn
