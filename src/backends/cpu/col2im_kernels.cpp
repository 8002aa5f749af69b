// Col2Im on the CPU: every column value is added into the image position it came from (see
// ops/col2im_geometry.hpp); positions in the padding are dropped. Sums in float32 in the order
// of the columns, as the ONNX reference adds them.
#include <vector>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/col2im_geometry.hpp"

namespace kiln::cpu {
namespace {

void col2im_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const TensorView& x = ctx.inputs[0];
  const ops::nn::Col2ImGeometry g = ops::nn::resolve_col2im(
      nn::label_of(ctx), ctx.attrs, x.shape, read_indices(ctx.inputs[1]),
      read_indices(ctx.inputs[2]));
  nn::require_output_shape(ctx, 0, g.output);
  const size_t spatial = g.image.size();
  const int64_t image_size = shape_numel(g.image);
  const int64_t window_size = shape_numel(g.block);
  const int64_t block_count = x.shape[2];
  const int64_t planes = x.shape[0] * g.channels;
  float* out = ctx.outputs[0].as<float>();
  for (int64_t i = 0; i < planes * image_size; ++i) out[i] = 0.0f;
  if (block_count == 0 || planes == 0) return;

  // Per spatial axis, per (window position, block): the image coordinate, -1 when in the padding.
  std::vector<std::vector<int64_t>> coordinate(spatial);
  for (size_t a = 0; a < spatial; ++a) {
    coordinate[a].resize(static_cast<size_t>(g.block[a] * g.blocks[a]));
    for (int64_t k = 0; k < g.block[a]; ++k) {
      for (int64_t b = 0; b < g.blocks[a]; ++b) {
        const int64_t pos = b * g.strides[a] - g.pad_begin[a] + k * g.dilations[a];
        const bool inside = pos >= 0 && pos < g.image[a];
        coordinate[a][static_cast<size_t>(k * g.blocks[a] + b)] = inside ? pos : -1;
      }
    }
  }
  // The image offset of every (window position, block) pair, -1 when any axis is in the padding.
  std::vector<int64_t> target(static_cast<size_t>(window_size * block_count));
  // Digits of k and b per axis, last axis first, so the offset builds up from the innermost axis.
  for (int64_t k = 0; k < window_size; ++k) {
    for (int64_t b = 0; b < block_count; ++b) {
      int64_t rest_k = k, rest_b = b, offset = 0, multiplier = 1;
      for (size_t a = spatial; a-- > 0;) {
        const int64_t k_digit = rest_k % g.block[a];
        const int64_t b_digit = rest_b % g.blocks[a];
        rest_k /= g.block[a];
        rest_b /= g.blocks[a];
        const int64_t pos = coordinate[a][static_cast<size_t>(k_digit * g.blocks[a] + b_digit)];
        if (pos < 0) {
          offset = -1;
          break;
        }
        offset += pos * multiplier;
        multiplier *= g.image[a];
      }
      target[static_cast<size_t>(k * block_count + b)] = offset;
    }
  }
  const float* in = x.as<const float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* columns = in + p * window_size * block_count;
    float* image = out + p * image_size;
    for (int64_t j = 0; j < window_size * block_count; ++j) {
      const int64_t offset = target[static_cast<size_t>(j)];
      if (offset >= 0) image[offset] += columns[j];
    }
  }
}

}  // namespace

void register_col2im_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<col2im_kernel>(registry, "Col2Im");
}

}  // namespace kiln::cpu
