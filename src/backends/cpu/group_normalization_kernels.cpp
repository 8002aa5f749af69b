// InstanceNormalization, GroupNormalization: CPU kernels (the reference). Each (n, group) row is
// contiguous; its mean and variance are computed in double with two passes (exact enough for any
// row length), then every element is normalised and given its channel's (or group's) affine.
#include <cmath>

#include "backends/cpu/cpu_kernel.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/group_norm_geometry.hpp"

namespace kiln::cpu {
namespace {

void group_norm_kernel(KernelContext& ctx) {
  for (size_t i = 0; i < 3; ++i) nn::require_float32_input(ctx, i);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  const ops::GroupNormGeometry g =
      ops::resolve_group_norm(ops::NodeRef{ctx.node_name, ctx.op}, ctx.attrs, x.shape,
                              ctx.inputs[1].shape, ctx.inputs[2].shape);
  nn::require_output_shape(ctx, 0, x.shape);
  const float* in = x.as<const float>();
  const float* scale = ctx.inputs[1].as<const float>();
  const float* bias = ctx.inputs[2].as<const float>();
  float* out = ctx.outputs[0].as<float>();
  const int64_t rows = g.rows();
  const int64_t length = g.row_length();
  const int64_t channels_per_group = g.channels_per_group();
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t group = row % g.groups;
    const float* xr = in + row * length;
    float* yr = out + row * length;
    double sum = 0.0;
    for (int64_t i = 0; i < length; ++i) sum += xr[i];
    const double mean = length > 0 ? sum / static_cast<double>(length) : 0.0;
    double squares = 0.0;
    for (int64_t i = 0; i < length; ++i) squares += (xr[i] - mean) * (xr[i] - mean);
    const double variance = length > 0 ? squares / static_cast<double>(length) : 0.0;
    const double inv_std = 1.0 / std::sqrt(variance + static_cast<double>(g.epsilon));
    for (int64_t c = 0; c < channels_per_group; ++c) {
      const int64_t param = g.per_group_affine ? group : group * channels_per_group + c;
      const double multiplier = inv_std * scale[param];
      const double offset = bias[param] - mean * multiplier;
      const int64_t begin = c * g.spatial;
      for (int64_t i = begin; i < begin + g.spatial; ++i) {
        yr[i] = static_cast<float>(xr[i] * multiplier + offset);
      }
    }
  }
}

}  // namespace

void register_group_normalization_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<group_norm_kernel>(registry, "InstanceNormalization");
  nn::add_float_kernel<group_norm_kernel>(registry, "GroupNormalization");
}

}  // namespace kiln::cpu
