// TensorScatter on the CPU (see ops/tensor_scatter.hpp): copies past_cache, then each
// (batch row, outer index, update position)'s run of the dims past the axis, as bytes, so every
// dtype takes the same path.
#include <cstring>

#include "backends/cpu/nn_kernel_common.hpp"
#include "ops/tensor_scatter.hpp"

namespace kiln::cpu {
namespace {

void tensor_scatter_kernel(KernelContext& ctx) {
  const TensorView& cache = ctx.inputs[0];
  const TensorView& update = ctx.inputs[1];
  const bool indexed = ctx.has_input(2);
  const ops::nn::TensorScatterGeometry g =
      ops::nn::resolve_tensor_scatter(nn::label_of(ctx), ctx.attrs, cache.shape, update.shape,
                                      indexed ? &ctx.inputs[2].shape : nullptr);
  nn::require_output_shape(ctx, 0, cache.shape);
  if (ctx.outputs[0].dtype != cache.dtype || update.dtype != cache.dtype) {
    ctx.fail(ErrorCode::kInvalidArgument,
             "past_cache, update and present_cache must share a dtype");
  }
  const size_t element = dtype_size(cache.dtype);
  const auto* src = static_cast<const uint8_t*>(cache.data);
  const auto* upd = static_cast<const uint8_t*>(update.data);
  auto* out = static_cast<uint8_t*>(ctx.outputs[0].data);
  if (cache.nbytes() > 0) std::memcpy(out, src, cache.nbytes());

  const int64_t batch = cache.shape[0];
  const int64_t outer = ops::nn::product_or_dynamic(cache.shape, 1, g.axis);  // per batch row
  const int64_t capacity = cache.shape[g.axis];
  const int64_t sequence = update.shape[g.axis];
  const size_t run = static_cast<size_t>(
                         ops::nn::product_or_dynamic(cache.shape, g.axis + 1, cache.shape.size())) *
                     element;
  const int64_t* write_indices = indexed ? ctx.inputs[2].as<const int64_t>() : nullptr;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t start = write_indices ? write_indices[b] : 0;
    if (!g.circular && (start < 0 || start > capacity - sequence)) {
      ctx.fail(ErrorCode::kInvalidArgument, "input 2 (write_indices) holds ", start,
               " for batch row ", b, ": mode 'linear' needs 0 <= index and index + ", sequence,
               " (update length) <= ", capacity, " (cache length)");
    }
    for (int64_t o = 0; o < outer; ++o) {
      const int64_t plane = b * outer + o;
      for (int64_t s = 0; s < sequence; ++s) {
        int64_t position = start + s;
        if (g.circular) position = ((position % capacity) + capacity) % capacity;
        std::memcpy(out + static_cast<size_t>(plane * capacity + position) * run,
                    upd + static_cast<size_t>(plane * sequence + s) * run, run);
      }
    }
  }
}

}  // namespace

void register_tensor_scatter_kernels(CpuKernelRegistry& registry) {
  registry.add("TensorScatter",
               CpuKernel{&nn::kernel_with_node_errors<tensor_scatter_kernel>, false});
}

}  // namespace kiln::cpu
