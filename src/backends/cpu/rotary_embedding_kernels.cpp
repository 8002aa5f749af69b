// RotaryEmbedding on the CPU (see ops/rotary_embedding.hpp), in float32: float16 and bfloat16
// tensors arrive converted. Each (batch, token, head) rotates its pairs by that token's cos/sin
// row and copies the values past rotary_dim.
#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/rotary_embedding.hpp"

namespace kiln::cpu {
namespace {

void rotary_embedding_kernel(KernelContext& ctx) {
  nn::require_float32_input(ctx, 0);
  nn::require_float32_output(ctx, 0);
  const bool indexed = ctx.has_input(3);
  const TensorView& x = ctx.inputs[0];
  const ops::nn::RotaryGeometry g =
      ops::nn::resolve_rotary(nn::label_of(ctx), ctx.attrs, x.shape, ctx.inputs[1].shape,
                              ctx.inputs[2].shape, indexed ? &ctx.inputs[3].shape : nullptr);
  nn::require_output_shape(ctx, 0, x.shape);
  const float* in = x.as<const float>();
  const float* cos_cache = ctx.inputs[1].as<const float>();
  const float* sin_cache = ctx.inputs[2].as<const float>();
  const int64_t* positions = indexed ? ctx.inputs[3].as<const int64_t>() : nullptr;
  const int64_t max_position = indexed ? ctx.inputs[1].shape[0] : 0;
  float* out = ctx.outputs[0].as<float>();
  const int64_t half = g.rotary_dim / 2;
  // The two values of pair i: (2i, 2i + 1) interleaved, else (i, i + half).
  const int64_t first_step = g.interleaved ? 2 : 1;
  const int64_t second_offset = g.interleaved ? 1 : half;

  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t s = 0; s < g.sequence; ++s) {
      int64_t row = b * g.sequence + s;  // the cache row without position_ids
      if (indexed) {
        row = positions[b * g.sequence + s];
        if (row < 0 || row >= max_position) {
          ctx.fail(ErrorCode::kInvalidArgument, "input 3 (position_ids) holds ", row, " at [", b,
                   ", ", s, "], outside the caches' ", max_position, " rows");
        }
      }
      const float* cos_row = cos_cache + row * half;
      const float* sin_row = sin_cache + row * half;
      for (int64_t h = 0; h < g.heads; ++h) {
        // [B, H, S, D] or [B, S, H, D] (the 3-D form's hidden dim is H * D).
        const int64_t offset = g.heads_first ? ((b * g.heads + h) * g.sequence + s) * g.head_size
                                             : ((b * g.sequence + s) * g.heads + h) * g.head_size;
        const float* src = in + offset;
        float* dst = out + offset;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t first = i * first_step;
          const int64_t second = first + second_offset;
          const float x1 = src[first];
          const float x2 = src[second];
          dst[first] = cos_row[i] * x1 - sin_row[i] * x2;
          dst[second] = sin_row[i] * x1 + cos_row[i] * x2;
        }
        for (int64_t d = g.rotary_dim; d < g.head_size; ++d) dst[d] = src[d];
      }
    }
  }
}

}  // namespace

void register_rotary_embedding_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<rotary_embedding_kernel>(registry, "RotaryEmbedding");
}

}  // namespace kiln::cpu
