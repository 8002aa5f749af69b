// MatMul and Gemm on CUDA through cuBLASLt. Row-major operands are passed as their column-major
// transposes (C^T = B^T * A^T), so no data is moved. The algorithm is chosen at prepare time.
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>

#include "backends/cuda/cuda_check.hpp"
#include "backends/cuda/cuda_kernel.hpp"
#include "backends/cuda/device_buffer.hpp"
#include "backends/cuda/library_handles.hpp"
#include "backends/cuda/strided_copy.cuh"
#include "backends/cuda/tactics.hpp"

namespace kiln::cuda {
namespace {

constexpr size_t kGemmWorkspace = size_t{32} << 20;

cudaDataType_t cuda_type(const LaunchContext& ctx, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return CUDA_R_32F;
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    default: ctx.fail(ErrorCode::kUnsupported, "dtype ", dtype_name(dtype), " is not supported by cuBLASLt here");
  }
}

// One cuBLASLt call: D[b] = alpha * op(A[b]) * op(B[b]) (+ bias) (+ beta * C), in row-major terms.
struct GemmPlan {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;  // elements between batches (0 broadcasts)
  // Outer loop for batch broadcasts cuBLASLt cannot express with one stride.
  int64_t outer = 1;
  int64_t outer_stride_a = 0, outer_stride_b = 0, outer_stride_d = 0;
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false;                  // C is a length-N vector added to every row
  bool c_matrix = false;              // C is a full [M, N] matrix (batch 1)
  bool c_expand = false;              // C broadcasts otherwise: expanded into D first, D += ...
};

class GemmState : public LayerState {
 public:
  ~GemmState() override {
    if (operation) cublasLtMatmulDescDestroy(operation);
    for (cublasLtMatrixLayout_t layout : layouts)
      if (layout) cublasLtMatrixLayoutDestroy(layout);
  }
  GemmPlan plan;
  cublasLtMatmulDesc_t operation = nullptr;
  std::array<cublasLtMatrixLayout_t, 4> layouts{};  // A' (=B row-major), B' (=A row-major), C, D
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                       sizeof stride));
  }
  return layout;
}

// Batch dims of MatMul: either side may broadcast. Returns false when they need an outer loop that
// this planner does not express (both sides broadcast in different dims).
void plan_matmul_batches(const LaunchContext& ctx, const Shape& a, const Shape& b, GemmPlan& plan) {
  Shape batch_a(a.begin(), a.end() - 2);
  Shape batch_b(b.begin(), b.end() - 2);
  const size_t rank = std::max(batch_a.size(), batch_b.size());
  batch_a.insert(batch_a.begin(), rank - batch_a.size(), 1);
  batch_b.insert(batch_b.begin(), rank - batch_b.size(), 1);
  int64_t count_a = 1, count_b = 1, count = 1;
  for (size_t d = 0; d < rank; ++d) {
    count_a *= batch_a[d];
    count_b *= batch_b[d];
    count *= std::max(batch_a[d], batch_b[d]);
  }
  const int64_t size_a = plan.m * plan.k, size_b = plan.k * plan.n, size_d = plan.m * plan.n;
  plan.stride_d = size_d;
  if (count_a == count && count_b == count) {
    plan.batch = count;
    plan.stride_a = size_a;
    plan.stride_b = size_b;
  } else if (count_b == 1) {
    plan.batch = count;
    plan.stride_a = size_a;
    plan.stride_b = 0;
  } else if (count_a == 1) {
    plan.batch = count;
    plan.stride_a = 0;
    plan.stride_b = size_b;
  } else {
    // Mixed broadcast, e.g. [2,1,M,K] x [1,3,K,N]: loop the leading dims of A over B's batches.
    if (rank != 2 || !(batch_a[1] == 1 && batch_b[0] == 1)) {
      ctx.fail(ErrorCode::kUnsupported, "batch broadcast between ", shape_to_string(a), " and ", shape_to_string(b));
    }
    plan.outer = batch_a[0];
    plan.outer_stride_a = size_a;
    plan.outer_stride_b = 0;
    plan.outer_stride_d = batch_b[1] * size_d;
    plan.batch = batch_b[1];
    plan.stride_a = 0;
    plan.stride_b = size_b;
  }
}

GemmPlan plan_matmul(const LaunchContext& ctx) {
  Shape a = ctx.inputs[0].shape;
  Shape b = ctx.inputs[1].shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  GemmPlan plan;
  plan.m = a[a.size() - 2];
  plan.k = a[a.size() - 1];
  plan.n = b[b.size() - 1];
  if (b[b.size() - 2] != plan.k) ctx.fail(ErrorCode::kInvalidArgument, "inner dimensions differ");
  // [..., M, K] x [K, N]: fold A's batch into M (one larger GEMM, no batching).
  if (b.size() == 2 && a.size() > 2) {
    for (size_t d = 0; d + 2 < a.size(); ++d) plan.m *= a[d];
    return plan;
  }
  plan_matmul_batches(ctx, a, b, plan);
  return plan;
}

// kiln's MatMul bias (input 2, length N) goes to the epilogue.
GemmPlan plan_matmul_with_bias(const LaunchContext& ctx) {
  GemmPlan plan = plan_matmul(ctx);
  plan.bias = ctx.has_input(2);
  return plan;
}

GemmPlan plan_gemm(const LaunchContext& ctx) {
  const Shape& a = ctx.inputs[0].shape;
  const Shape& b = ctx.inputs[1].shape;
  GemmPlan plan;
  plan.trans_a = ctx.attrs.get_int_or("transA", 0) != 0;
  plan.trans_b = ctx.attrs.get_int_or("transB", 0) != 0;
  plan.m = plan.trans_a ? a[1] : a[0];
  plan.k = plan.trans_a ? a[0] : a[1];
  plan.n = plan.trans_b ? b[0] : b[1];
  plan.alpha = ctx.attrs.get_float_or("alpha", 1.0f);
  plan.beta = ctx.attrs.get_float_or("beta", 1.0f);
  if (ctx.has_input(2) && plan.beta != 0.0f) {
    const Shape& c = ctx.inputs[2].shape;
    const int64_t c_numel = ctx.inputs[2].numel();
    const bool row_vector = (c.size() == 1 && c[0] == plan.n) || (c.size() == 2 && c[0] == 1 && c[1] == plan.n);
    if (row_vector && plan.beta == 1.0f) {
      plan.bias = true;
    } else if (c.size() == 2 && c[0] == plan.m && c[1] == plan.n) {
      plan.c_matrix = true;
    } else if (c.size() <= 2) {
      plan.c_expand = true;
    } else {
      ctx.fail(ErrorCode::kInvalidArgument, "C of shape ", shape_to_string(c), " (", c_numel,
               " elements) does not broadcast to [M, N]");
    }
  }
  return plan;
}

// The problem a GEMM layer solves, as a timing-cache key.
std::string gemm_key(const LaunchContext& ctx, const GemmPlan& plan, DType dtype, cublasComputeType_t compute,
                     bool relu) {
  std::ostringstream key;
  key << "gemm " << dtype_name(dtype) << " m" << plan.m << " n" << plan.n << " k" << plan.k << " t" << plan.trans_a
      << plan.trans_b << " b" << plan.batch << " sa" << plan.stride_a << " sb" << plan.stride_b << " bias" << plan.bias
      << " relu" << relu << " c" << (plan.c_matrix || plan.c_expand) << " compute" << static_cast<int>(compute) << " "
      << device_tag(ctx);
  return key.str();
}

// cublasLtMatmulAlgo_t is plain data: it round-trips through hex text.
std::string encode_algo(const cublasLtMatmulAlgo_t& algo) {
  std::string text = "lt:";
  char digits[17];
  for (uint64_t word : algo.data) {
    std::snprintf(digits, sizeof digits, "%016llx", static_cast<unsigned long long>(word));
    text += digits;
  }
  return text;
}

bool decode_algo(const std::string& text, cublasLtMatmulAlgo_t& algo) {
  constexpr size_t kWords = sizeof(algo.data) / sizeof(algo.data[0]);
  if (text.size() != 3 + 16 * kWords || text.compare(0, 3, "lt:") != 0) return false;
  for (size_t w = 0; w < kWords; ++w) {
    uint64_t word = 0;
    for (size_t i = 0; i < 16; ++i) {
      const char c = text[3 + 16 * w + i];
      const int digit = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1);
      if (digit < 0) return false;
      word = word << 4 | static_cast<uint64_t>(digit);
    }
    algo.data[w] = word;
  }
  return true;
}

// Times each candidate on the layer's own operands (outputs go to a scratch buffer) and returns the
// index of the fastest.
int fastest_candidate(const LaunchContext& ctx, const GemmState& state, const cublasLtMatmulHeuristicResult_t* results,
                      int count) {
  const GemmPlan& plan = state.plan;
  size_t scratch_bytes = 0;
  for (int i = 0; i < count; ++i) scratch_bytes = std::max(scratch_bytes, results[i].workspaceSize);
  DeviceBuffer workspace(std::max<size_t>(scratch_bytes, 256));
  DeviceBuffer output(std::max<size_t>(ctx.outputs[0].nbytes(), 256));
  if (plan.bias) {
    const void* bias = ctx.inputs[2].data;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state.operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  const float beta = plan.c_matrix ? plan.beta : 0.0f;
  const void* c = plan.c_matrix ? ctx.inputs[2].data : output.get();
  int best = 0;
  float best_ms = std::numeric_limits<float>::infinity();
  for (int i = 0; i < count; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const float ms = time_on_stream(ctx.stream, 5, [&] {
      return cublasLtMatmul(ctx.libs->cublaslt, state.operation, &plan.alpha, ctx.inputs[1].data, state.layouts[0],
                            ctx.inputs[0].data, state.layouts[1], &beta, c, state.layouts[2], output.get(),
                            state.layouts[3], &results[i].algo, workspace.get(), results[i].workspaceSize,
                            ctx.stream) == CUBLAS_STATUS_SUCCESS;
    });
    if (ms < best_ms) {
      best_ms = ms;
      best = i;
    }
  }
  return best;
}

std::unique_ptr<LayerState> prepare_gemm(LaunchContext& ctx, size_t* workspace_bytes) {
  auto state = std::make_unique<GemmState>();
  GemmPlan& plan = state->plan;
  plan = ctx.op == "Gemm" ? plan_gemm(ctx) : plan_matmul_with_bias(ctx);
  const DType dtype = ctx.outputs[0].dtype;
  if (ctx.inputs[0].dtype != dtype || ctx.inputs[1].dtype != dtype) {
    ctx.fail(ErrorCode::kUnsupported, "mixed dtypes ", dtype_name(ctx.inputs[0].dtype), " x ",
             dtype_name(ctx.inputs[1].dtype));
  }
  const cudaDataType_t type = cuda_type(ctx, dtype);
  const cublasComputeType_t compute =
      dtype == DType::kFloat32 && ctx.attrs.get_int_or("kiln_allow_tf32", 0) ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                              : CUBLAS_COMPUTE_32F;
  KILN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&state->operation, compute, CUDA_R_32F));
  // Column-major view: D^T (N x M) = op(B)^T (N x K) * op(A)^T (K x M).
  const cublasOperation_t op_first = plan.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = plan.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state->operation, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state->operation, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
  if (!activation.empty() && activation != "Relu") ctx.fail(ErrorCode::kUnsupported, "fused activation ", activation);
  const bool relu = activation == "Relu";
  if (relu || plan.bias) {
    const cublasLtEpilogue_t epilogue = plan.bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                                  : CUBLASLT_EPILOGUE_RELU;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state->operation, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  }
  if (plan.bias) {
    const cudaDataType_t bias_type = type;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state->operation, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                     sizeof bias_type));
  }
  // Row-major X (r x c) is column-major X^T (c x r) with leading dimension c.
  const int64_t b_rows = plan.trans_b ? plan.k : plan.n, b_cols = plan.trans_b ? plan.n : plan.k;
  const int64_t a_rows = plan.trans_a ? plan.m : plan.k, a_cols = plan.trans_a ? plan.k : plan.m;
  state->layouts[0] = make_layout(type, b_rows, b_cols, b_rows, plan.batch, plan.stride_b);
  state->layouts[1] = make_layout(type, a_rows, a_cols, a_rows, plan.batch, plan.stride_a);
  state->layouts[2] = make_layout(type, plan.n, plan.m, plan.n, plan.batch, plan.stride_d);
  state->layouts[3] = make_layout(type, plan.n, plan.m, plan.n, plan.batch, plan.stride_d);

  const std::string key = gemm_key(ctx, plan, dtype, compute, relu);
  if (const std::optional<std::string> known = known_tactic(ctx, key)) {
    cublasLtMatmulAlgo_t algo{};
    cublasLtMatmulHeuristicResult_t check{};
    if (decode_algo(*known, algo) &&
        cublasLtMatmulAlgoCheck(ctx.libs->cublaslt, state->operation, state->layouts[0], state->layouts[1],
                                state->layouts[2], state->layouts[3], &algo, &check) == CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= std::min(kGemmWorkspace, ctx.workspace_size)) {
      state->algo = algo;
      state->workspace = check.workspaceSize;
      *workspace_bytes = check.workspaceSize;
      report_tactic(ctx, key, *known);
      return state;
    }
  }
  cublasLtMatmulPreference_t preference = nullptr;
  KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const size_t limit = std::min(kGemmWorkspace, ctx.workspace_size);
  KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit,
                                                         sizeof limit));
  // A tuning run (the builder) times the heuristic's top candidates; otherwise its first is taken.
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates]{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      ctx.libs->cublaslt, state->operation, state->layouts[0], state->layouts[1], state->layouts[2], state->layouts[3],
      preference, tuning_active() ? kCandidates : 1, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  KILN_CUBLAS_CHECK(status);
  if (found == 0) {
    ctx.fail(ErrorCode::kUnsupported, "cuBLASLt has no algorithm for M=", plan.m, " N=", plan.n, " K=", plan.k,
             " batch=", plan.batch, " ", dtype_name(dtype));
  }
  int best = 0;
  if (found > 1) best = fastest_candidate(ctx, *state, results, found);
  state->algo = results[best].algo;
  state->workspace = results[best].workspaceSize;
  *workspace_bytes = results[best].workspaceSize;
  report_tactic(ctx, key, encode_algo(state->algo));
  return state;
}

void launch_gemm(LaunchContext& ctx) {
  auto& state = static_cast<GemmState&>(*ctx.state);
  const GemmPlan& plan = state.plan;
  const size_t element = dtype_size(ctx.outputs[0].dtype);
  if (plan.bias) {
    const void* bias = ctx.inputs[2].data;
    KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(state.operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  if (plan.c_expand) {
    // D starts as C broadcast to [M, N]; cuBLASLt then computes D = alpha * A * B + beta * D.
    const Shape& c = ctx.inputs[2].shape;
    const int64_t c_rows = c.size() == 2 ? c[0] : 1;
    const int64_t c_cols = c.empty() ? 1 : c.back();
    const std::vector<int64_t> strides = {c_rows == 1 ? 0 : c_cols, c_cols == 1 ? 0 : 1};
    launch_strided_copy(ctx, ctx.inputs[2].data, ctx.outputs[0].data, element, Shape{plan.m, plan.n}, strides);
  }
  const float beta = plan.c_matrix || plan.c_expand ? plan.beta : 0.0f;
  for (int64_t o = 0; o < plan.outer; ++o) {
    const auto* a = ctx.inputs[0].as<const uint8_t>() + o * plan.outer_stride_a * element;
    const auto* b = ctx.inputs[1].as<const uint8_t>() + o * plan.outer_stride_b * element;
    auto* d = ctx.outputs[0].as<uint8_t>() + o * plan.outer_stride_d * element;
    const void* c = plan.c_matrix ? ctx.inputs[2].data : d;
    KILN_CUBLAS_CHECK(cublasLtMatmul(ctx.libs->cublaslt, state.operation, &plan.alpha, b, state.layouts[0], a,
                                     state.layouts[1], &beta, c, state.layouts[2], d, state.layouts[3], &state.algo,
                                     ctx.workspace, state.workspace, ctx.stream));
  }
}

}  // namespace

void register_gemm_kernels(CudaKernelRegistry& registry) {
  // float32/float16/bfloat16 only: a float64 GEMM would read the doubles as other values.
  const backends::KernelSupport nn_float{.inputs = {{{0}, backends::kNnFloatDTypes}}};
  registry.add("MatMul", CudaKernel{prepare_gemm, launch_gemm}, nn_float);
  registry.add("Gemm", CudaKernel{prepare_gemm, launch_gemm}, nn_float);
}

}  // namespace kiln::cuda
