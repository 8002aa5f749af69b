// Gemm and MatMul on the CPU through cblas_sgemm (float32; float16/bfloat16 arrive converted)
// and cblas_dgemm (float64).
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cpu/nn_blas.hpp"
#include "backends/cpu/nn_kernel_common.hpp"
#include "backends/cpu/onednn_conv.hpp"
#include "backends/cpu/simd_math.hpp"
#include "ops/scalar_math.h"

namespace kiln::cpu {
namespace {

// Fails with kUnsupported unless inputs and output are all float32 or all float64.
bool require_gemm_dtypes(const KernelContext& ctx, size_t inputs) {
  const DType dtype = ctx.inputs[0].dtype;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) {
    ctx.fail(ErrorCode::kUnsupported, "input 0 has unsupported dtype ", dtype_name(dtype),
             "; supported: float32, float16, bfloat16, float64");
  }
  for (size_t i = 1; i < inputs; ++i) {
    if (ctx.has_input(i) && ctx.inputs[i].dtype != dtype) {
      ctx.fail(ErrorCode::kInvalidArgument, "input ", i, " has dtype ",
               dtype_name(ctx.inputs[i].dtype), " but input 0 has ", dtype_name(dtype));
    }
  }
  if (ctx.outputs[0].dtype != dtype) {
    ctx.fail(ErrorCode::kInvalidArgument, "output 0 has dtype ", dtype_name(ctx.outputs[0].dtype),
             " but input 0 has ", dtype_name(dtype));
  }
  return dtype == DType::kFloat64;
}

template <typename T>
void gemm_compute(KernelContext& ctx) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  if (a.shape.size() != 2 || b.shape.size() != 2) {
    ctx.fail(ErrorCode::kInvalidArgument, "A ", shape_to_string(a.shape), " and B ",
             shape_to_string(b.shape), " must be matrices");
  }
  const bool trans_a = ctx.attrs.get_int_or("transA", 0) != 0;
  const bool trans_b = ctx.attrs.get_int_or("transB", 0) != 0;
  const T alpha = static_cast<T>(ctx.attrs.get_float_or("alpha", 1.0f));
  const T beta = static_cast<T>(ctx.attrs.get_float_or("beta", 1.0f));
  const int64_t m = trans_a ? a.shape[1] : a.shape[0];
  const int64_t k = trans_a ? a.shape[0] : a.shape[1];
  const int64_t n = trans_b ? b.shape[0] : b.shape[1];
  if ((trans_b ? b.shape[1] : b.shape[0]) != k) {
    ctx.fail(ErrorCode::kInvalidArgument, "inner dimensions of A ", shape_to_string(a.shape),
             " and B ", shape_to_string(b.shape), " differ");
  }
  nn::require_output_shape(ctx, 0, Shape{m, n});
  T* y = ctx.outputs[0].as<T>();

  T blas_beta = T{0};
  if (ctx.has_input(2) && beta != T{0}) {
    const TensorView& c = ctx.inputs[2];
    // Unidirectional broadcast of C (rank 0..2) to [m, n]: a dim of 1 repeats.
    const Shape padded = [&] {
      Shape s(2 - std::min<size_t>(c.shape.size(), 2), 1);
      s.insert(s.end(), c.shape.begin(), c.shape.end());
      return s;
    }();
    if (padded.size() != 2 || (padded[0] != 1 && padded[0] != m) ||
        (padded[1] != 1 && padded[1] != n)) {
      ctx.fail(ErrorCode::kInvalidArgument, "C ", shape_to_string(c.shape),
               " cannot broadcast to [", m, ", ", n, "]");
    }
    const T* c_data = c.as<const T>();
    const int64_t row_step = padded[0] == 1 ? 0 : padded[1];
    const int64_t col_step = padded[1] == 1 ? 0 : 1;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = c_data[i * row_step + j * col_step];
    }
    blas_beta = beta;
  }
  nn::gemm_row_major(ctx, trans_a, trans_b, m, n, k, alpha, a.as<const T>(), a.shape[1],
                     b.as<const T>(), b.shape[1], blas_beta, y, n);
}

// Batch offsets (in matrices) of an operand broadcast to `out_batch`.
std::vector<int64_t> broadcast_batch_offsets(const Shape& operand_batch, const Shape& out_batch) {
  const size_t rank = out_batch.size();
  Shape padded(rank - operand_batch.size(), 1);
  padded.insert(padded.end(), operand_batch.begin(), operand_batch.end());
  std::vector<int64_t> strides(rank, 0);
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    strides[i] = padded[i] == 1 ? 0 : stride;
    stride *= padded[i];
  }
  const int64_t total = shape_numel(out_batch);
  std::vector<int64_t> offsets(static_cast<size_t>(total));
  std::vector<int64_t> index(rank, 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t offset = 0;
    for (size_t i = 0; i < rank; ++i) offset += index[i] * strides[i];
    offsets[static_cast<size_t>(flat)] = offset;
    for (size_t i = rank; i-- > 0;) {
      if (++index[i] < out_batch[i]) break;
      index[i] = 0;
    }
  }
  return offsets;
}

template <typename T>
void matmul_compute(KernelContext& ctx) {
  const TensorView& a = ctx.inputs[0];
  const TensorView& b = ctx.inputs[1];
  if (a.shape.empty() || b.shape.empty()) {
    ctx.fail(ErrorCode::kInvalidArgument, "operands must have rank >= 1");
  }
  const int64_t m = a.shape.size() >= 2 ? a.shape[a.shape.size() - 2] : 1;
  const int64_t k = a.shape.back();
  const int64_t n = b.shape.size() >= 2 ? b.shape.back() : 1;
  const int64_t k_b = b.shape.size() >= 2 ? b.shape[b.shape.size() - 2] : b.shape[0];
  if (k != k_b) {
    ctx.fail(ErrorCode::kInvalidArgument, "inner dimensions of A ", shape_to_string(a.shape),
             " and B ", shape_to_string(b.shape), " differ");
  }
  const Shape batch_a = a.shape.size() > 2 ? Shape(a.shape.begin(), a.shape.end() - 2) : Shape{};
  const Shape batch_b = b.shape.size() > 2 ? Shape(b.shape.begin(), b.shape.end() - 2) : Shape{};
  Shape out_batch(std::max(batch_a.size(), batch_b.size()));
  for (size_t i = 0; i < out_batch.size(); ++i) {
    const size_t ra = out_batch.size() - batch_a.size();
    const size_t rb = out_batch.size() - batch_b.size();
    const int64_t da = i < ra ? 1 : batch_a[i - ra];
    const int64_t db = i < rb ? 1 : batch_b[i - rb];
    if (da != db && da != 1 && db != 1) {
      ctx.fail(ErrorCode::kInvalidArgument, "batch dims of ", shape_to_string(a.shape), " and ",
               shape_to_string(b.shape), " do not broadcast");
    }
    out_batch[i] = da == 1 ? db : da;
  }
  Shape expected = out_batch;
  if (a.shape.size() >= 2) expected.push_back(m);
  if (b.shape.size() >= 2) expected.push_back(n);
  nn::require_output_shape(ctx, 0, expected);

  const T* a_data = a.as<const T>();
  const T* b_data = b.as<const T>();
  T* y = ctx.outputs[0].as<T>();
  const int64_t batches = shape_numel(out_batch);
  const int64_t ldb = b.shape.size() >= 2 ? n : 1;
  if (shape_numel(batch_b) == 1 && shape_numel(batch_a) == batches) {
    // B is shared by every batch: one GEMM over the stacked rows of A.
    nn::gemm_row_major(ctx, false, false, batches * m, n, k, T{1}, a_data, k, b_data, ldb, T{0}, y,
                       n);
    return;
  }
  const std::vector<int64_t> offsets_a = broadcast_batch_offsets(batch_a, out_batch);
  const std::vector<int64_t> offsets_b = broadcast_batch_offsets(batch_b, out_batch);
  for (int64_t i = 0; i < batches; ++i) {
    const auto idx = static_cast<size_t>(i);
    nn::gemm_row_major(ctx, false, false, m, n, k, T{1}, a_data + offsets_a[idx] * m * k, k,
                       b_data + offsets_b[idx] * k * n, ldb, T{0}, y + i * m * n, n);
  }
}

// kiln's fusions: MatMul's optional bias (input 2, length N, added to every row), then the
// activation named by kiln_activation.
template <typename T>
void apply_epilogue(KernelContext& ctx, bool has_bias) {
  T* y = ctx.outputs[0].as<T>();
  const int64_t total = ctx.outputs[0].numel();
  if (has_bias && ctx.has_input(2)) {
    const int64_t n = ctx.inputs[2].numel();
    const T* bias = ctx.inputs[2].as<const T>();
    if (n == 0 || ctx.outputs[0].shape.empty() || ctx.outputs[0].shape.back() != n) {
      ctx.fail(ErrorCode::kInvalidArgument, "bias of ", n, " elements does not match output ",
               shape_to_string(ctx.outputs[0].shape));
    }
    for (int64_t row = 0; row < total; row += n) {
      if constexpr (std::is_same_v<T, float>) {
        simd::add(y + row, bias, y + row, n);
      } else {
        for (int64_t j = 0; j < n; ++j) y[row + j] += bias[j];
      }
    }
  }
  const std::string activation = ctx.attrs.get_string_or("kiln_activation", "");
  if (activation == "Relu") {
    // The scalar table's Relu, so NaN stays NaN as in a standalone Relu (and PyTorch, ONNX Runtime).
    for (int64_t i = 0; i < total; ++i) y[i] = kiln_relu<T>(y[i]);
  } else if (!activation.empty()) {
    ctx.fail(ErrorCode::kUnsupported, "fused activation '", activation, "'");
  }
}

void gemm_kernel(KernelContext& ctx) {
  if (onednn::requested_matmul_choice() != onednn::ConvChoice::kReference && onednn::try_run_matmul(ctx)) return;
  if (require_gemm_dtypes(ctx, 3)) {
    gemm_compute<double>(ctx);
    apply_epilogue<double>(ctx, false);  // Gemm's C is its own bias
  } else {
    gemm_compute<float>(ctx);
    apply_epilogue<float>(ctx, false);
  }
}

void matmul_kernel(KernelContext& ctx) {
  // oneDNN with packed weights where it takes the call (onednn_conv.hpp), unless
  // KILN_CPU_MATMUL=reference asks for the reference kernel.
  if (onednn::requested_matmul_choice() != onednn::ConvChoice::kReference && onednn::try_run_matmul(ctx)) return;
  if (require_gemm_dtypes(ctx, 3)) {
    matmul_compute<double>(ctx);
    apply_epilogue<double>(ctx, true);
  } else {
    matmul_compute<float>(ctx);
    apply_epilogue<float>(ctx, true);
  }
}

}  // namespace

void register_gemm_kernels(CpuKernelRegistry& registry) {
  nn::add_float_kernel<gemm_kernel>(registry, "Gemm");
  nn::add_float_kernel<matmul_kernel>(registry, "MatMul");
}

}  // namespace kiln::cpu
