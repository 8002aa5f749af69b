// FusedAttention on CUDA (contract in ops/attention.hpp): float16/bfloat16 with head dims that are
// multiples of 16 (<= 128) run the tensor-core kernel of flash_attention.cuh. The builder fuses
// attention only where it applies (ops::attention_fits_tensor_cores). Its block shape (warps per
// block, whether the mask is read ahead) is a tactic: builds time the shapes on the layer's own
// tensors and record the fastest, like the GEMM and convolution algorithms.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/flash_attention.cuh"
#include "backends/cuda/tactics.hpp"
#include "ops/attention.hpp"

namespace kiln::cuda {
namespace {

using attention::AttentionParams;

AttentionParams make_params(const LaunchContext& ctx, const ops::AttentionGeometry& g) {
  AttentionParams p{};
  // The packed form reads Q, K and V from input 0, each at its own element offset.
  const auto start = [&](size_t input, int64_t offset) -> const void* {
    const TensorView& view = ctx.inputs[input];
    return static_cast<const char*>(view.data) + offset * static_cast<int64_t>(dtype_size(view.dtype));
  };
  p.q = start(0, g.q_offset);
  p.k = start(g.qkv_packed ? 0 : 1, g.k_offset);
  p.v = start(g.qkv_packed ? 0 : 2, g.v_offset);
  p.mask = ctx.has_input(3) ? ctx.inputs[3].data : nullptr;
  p.out = ctx.outputs[0].data;
  for (int i = 0; i < 4; ++i) {
    p.q_strides[i] = g.q_strides[i];
    p.k_strides[i] = g.k_strides[i];
    p.v_strides[i] = g.v_strides[i];
    p.out_strides[i] = g.out_strides[i];
    p.mask_strides[i] = g.mask_strides[i];
  }
  p.batch = static_cast<int>(g.batch);
  p.heads = static_cast<int>(g.heads);
  p.query_length = static_cast<int>(g.query_length);
  p.key_length = static_cast<int>(g.key_length);
  p.head_dim = static_cast<int>(g.head_dim);
  p.value_dim = static_cast<int>(g.value_dim);
  p.scale = g.scale;
  p.nan_to_zero = g.nan_to_zero;
  return p;
}

// ---- block shapes (tactics) -------------------------------------------------------------------

// One block shape of the kernel. Fewer warps per block waste less past short sequence ends and fit
// more blocks on an SM; more warps share each K/V tile among more query rows. Reading the mask
// ahead hides its latency at the cost of registers.
struct BlockShape {
  const char* name;  // the recorded tactic
  int warps;
  bool preload_mask;
};
constexpr BlockShape kBlockShapes[] = {{"flash:w2", 2, false}, {"flash:w4", 4, false}, {"flash:w4p", 4, true},
                                       {"flash:w8", 8, false}};
constexpr int kDefaultShape = 1;  // used when nothing was timed or recorded

std::optional<int> find_block_shape(const std::string& name) {
  for (int i = 0; i < static_cast<int>(std::size(kBlockShapes)); ++i) {
    if (name == kBlockShapes[i].name) return i;
  }
  return std::nullopt;
}

// Calls f.template operator()<T, kDim, kWarps, kMask>() for the dtype, head-dim tile, block shape
// `shape` (an index into kBlockShapes; callers pass only valid ones) and whether the layer has a
// mask (a layer without one runs kernels with no mask code at all).
template <typename F>
void dispatch_kernel(const LaunchContext& ctx, int tile_dim, int shape, bool has_mask, F&& f) {
  using attention::MaskMode;
  dispatch_float(ctx, ctx.outputs[0].dtype, [&]<typename T>() {
    if constexpr (std::is_same_v<T, float>) {
      ctx.fail(ErrorCode::kInternal, "float32 reached the tensor-core attention kernel");
    } else {
      // One instantiation per table entry, so the table is the only list of shapes.
      const auto with_dim = [&]<int kDim>() {
        [&]<size_t... kShapes>(std::index_sequence<kShapes...>) {
          const auto run = [&]<size_t kShape>() {
            constexpr BlockShape block = kBlockShapes[kShape];
            if (!has_mask) {
              f.template operator()<T, kDim, block.warps, MaskMode::kNone>();
            } else {
              f.template operator()<T, kDim, block.warps,
                                    block.preload_mask ? MaskMode::kPreload : MaskMode::kRead>();
            }
          };
          ((shape == static_cast<int>(kShapes) ? (run.template operator()<kShapes>(), 0) : 0), ...);
        }(std::make_index_sequence<std::size(kBlockShapes)>{});
      };
      if (tile_dim == 64) {
        with_dim.template operator()<64>();
      } else {
        with_dim.template operator()<128>();
      }
    }
  });
}

// ---- launch -------------------------------------------------------------------------------------

struct AttentionState : LayerState {
  ops::AttentionGeometry geometry;
  int tile_dim = 0;  // 64 or 128: the head dims padded to the kernel's tile
  int shape = kDefaultShape;
};

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// Launches block shape `shape` of the kernel on `params`; false when the launch failed.
bool launch_kernel(const LaunchContext& ctx, const AttentionState& state, int shape, const AttentionParams& params,
                   cudaStream_t stream) {
  const ops::AttentionGeometry& g = state.geometry;
  bool launched = false;
  dispatch_kernel(ctx, state.tile_dim, shape, params.mask != nullptr,
                  [&]<typename T, int kDim, int kWarps, attention::MaskMode kMask>() {
    using Layout = attention::TileLayout<kDim, kWarps>;
    const dim3 grid(static_cast<unsigned>((g.query_length + Layout::kBlockRows - 1) / Layout::kBlockRows),
                    static_cast<unsigned>(g.heads), static_cast<unsigned>(g.batch));
    attention::flash_attention_kernel<T, kDim, kWarps, kMask><<<grid, kWarps * 32, Layout::kBytes, stream>>>(params);
    launched = cudaPeekAtLastError() == cudaSuccess;
  });
  return launched;
}

// The kernels need more than the default 48 KB of dynamic shared memory.
void set_shared_limits(const LaunchContext& ctx, int tile_dim, bool has_mask) {
  for (int shape = 0; shape < static_cast<int>(std::size(kBlockShapes)); ++shape) {
    dispatch_kernel(ctx, tile_dim, shape, has_mask, [&]<typename T, int kDim, int kWarps, attention::MaskMode kMask>() {
      KILN_CUDA_CHECK(cudaFuncSetAttribute(attention::flash_attention_kernel<T, kDim, kWarps, kMask>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(attention::TileLayout<kDim, kWarps>::kBytes)));
    });
  }
}

std::string attention_key(const LaunchContext& ctx, const ops::AttentionGeometry& g) {
  std::ostringstream key;
  key << "attention " << dtype_name(ctx.outputs[0].dtype) << " b" << g.batch << " h" << g.heads << " q"
      << g.query_length << " k" << g.key_length << " d" << g.head_dim << " v" << g.value_dim << " mask"
      << ctx.has_input(3);
  if (ctx.has_input(3)) {
    key << " ms";
    for (const int64_t stride : g.mask_strides) key << (stride == 0 ? 'b' : 's');  // broadcast dims
  }
  key << " " << device_tag(ctx);
  return key.str();
}

// KILN_ATTENTION_BLOCK=<tactic name> (flash:w2, ...) forces that block shape whatever is recorded
// (tests run every shape this way); unset or empty: none. Any other value fails naming it.
std::optional<int> forced_block_shape(const LaunchContext& ctx) {
  const char* value = std::getenv("KILN_ATTENTION_BLOCK");
  if (value == nullptr || *value == '\0') return std::nullopt;
  if (const std::optional<int> shape = find_block_shape(value)) return shape;
  std::string names;
  for (const BlockShape& shape : kBlockShapes) names += std::string(names.empty() ? "" : ", ") + shape.name;
  ctx.fail(ErrorCode::kInvalidArgument, "KILN_ATTENTION_BLOCK must be one of ", names, " (or unset), got '", value,
           "'");
}

// The block shape: the forced one, else the recorded one, else (in a build) the fastest on this
// layer's tensors, else the default.
int choose_block_shape(LaunchContext& ctx, const AttentionState& state) {
  const std::string key = attention_key(ctx, state.geometry);
  if (const std::optional<int> forced = forced_block_shape(ctx)) {
    report_tactic(ctx, key, kBlockShapes[*forced].name);
    return *forced;
  }
  if (const std::optional<std::string> known = known_tactic(ctx, key)) {
    if (const std::optional<int> shape = find_block_shape(*known)) {
      report_tactic(ctx, key, *known);
      return *shape;
    }
  }
  if (!tuning_active() || ctx.outputs[0].numel() == 0) return kDefaultShape;
  AttentionParams params = make_params(ctx, state.geometry);
  DeviceBuffer output_scratch(ctx.outputs[0].nbytes());  // don't clobber live tensors while timing
  params.out = output_scratch.get();
  int best = kDefaultShape;
  float best_ms = std::numeric_limits<float>::infinity();
  for (int shape = 0; shape < static_cast<int>(std::size(kBlockShapes)); ++shape) {
    if (kBlockShapes[shape].preload_mask && !ctx.has_input(3)) continue;  // the same kernel as without
    const float ms =
        time_on_stream(ctx.stream, 10, [&] { return launch_kernel(ctx, state, shape, params, ctx.stream); });
    if (tactic_logging()) {
      std::fprintf(stderr, "kiln attention timing: layer '%s' %s %.4f ms\n", std::string(ctx.node_name).c_str(),
                   kBlockShapes[shape].name, ms);
    }
    if (ms < best_ms) {
      best_ms = ms;
      best = shape;
    }
  }
  report_tactic(ctx, key, kBlockShapes[best].name);
  return best;
}

std::unique_ptr<LayerState> prepare_attention(LaunchContext& ctx, size_t* workspace_bytes) {
  *workspace_bytes = 0;
  auto state = std::make_unique<AttentionState>();
  const std::string label = "node '" + std::string(ctx.node_name) + "' (FusedAttention) on cuda";
  const ops::AttentionGeometry& g = state->geometry = ops::resolve_attention_inputs(label, ctx);
  if (!ops::attention_fits_tensor_cores(ctx.outputs[0].dtype, g)) {
    ctx.fail(ErrorCode::kUnsupported, "the CUDA kernel needs float16/bfloat16, head dims multiples of 16 up to 128 ",
             "and K not transposed; got ", dtype_name(ctx.outputs[0].dtype), ", head dim ", g.head_dim,
             ", value dim ", g.value_dim, ctx.attrs.get_int_or("k_transposed", 0) ? ", K transposed" : "");
  }
  state->tile_dim = std::max(g.head_dim, g.value_dim) <= 64 ? 64 : 128;
  set_shared_limits(ctx, state->tile_dim, ctx.has_input(3));
  state->shape = choose_block_shape(ctx, *state);
  return state;
}

void launch_attention(LaunchContext& ctx) {
  const auto* state = dynamic_cast<const AttentionState*>(ctx.state);
  if (state == nullptr) ctx.fail(ErrorCode::kInternal, "launched without a prepared state");
  if (ctx.outputs[0].numel() == 0) return;
  const AttentionParams params = make_params(ctx, state->geometry);
  // Activations sit at 256-byte and weights at 64-byte offsets, so this only fails for foreign
  // buffers.
  if (!aligned16(params.q) || !aligned16(params.k) || !aligned16(params.v) || !aligned16(params.out)) {
    ctx.fail(ErrorCode::kInvalidArgument, "Q, K, V and the output must be 16-byte aligned");
  }
  launch_kernel(ctx, *state, state->shape, params, ctx.stream);
  check_launch(ctx);
}

}  // namespace

void register_attention_kernels(CudaKernelRegistry& registry) {
  // The tensor-core kernel computes float16/bfloat16 only (the builder fuses only such attention;
  // prepare_attention checks the head dims).
  registry.add("FusedAttention", CudaKernel{prepare_attention, launch_attention},
               {.inputs = {{{0}, {DType::kFloat16, DType::kBFloat16}}}});
}

}  // namespace kiln::cuda
