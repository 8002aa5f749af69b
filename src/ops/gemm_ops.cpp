// Gemm (Y = alpha * op(A) * op(B) + beta * C) and MatMul (numpy matmul semantics).
#include <algorithm>
#include <string>
#include <vector>

#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

// Two dims that must be equal: returns the known one (or kDynamicDim), fails when they differ.
int64_t merge_dims(const InferContext& ctx, int64_t a, int64_t b, const char* what) {
  if (a != kDynamicDim && b != kDynamicDim && a != b) {
    ctx.fail(what, " mismatch: ", a, " vs ", b);
  }
  return a != kDynamicDim ? a : b;
}

void require_same_dtype(const InferContext& ctx, size_t index) {
  if (ctx.input(index).dtype != ctx.input(0).dtype) {
    ctx.fail("input ", index, " has dtype ", dtype_name(ctx.input(index).dtype),
             " but input 0 has ", dtype_name(ctx.input(0).dtype));
  }
}

// kiln's fusion of a following activation (attribute kiln_activation).
void check_fused_activation(const InferContext& ctx) {
  const std::string activation = ctx.attrs().get_string_or("kiln_activation", "");
  if (!activation.empty() && activation != "Relu") {
    ctx.fail("attribute 'kiln_activation' must be \"Relu\", got \"", activation, "\"");
  }
}

void infer_gemm(InferContext& ctx) {
  check_fused_activation(ctx);
  nn::require_float_or_float64_input(ctx, 0, "A");
  require_same_dtype(ctx, 1);
  const Shape& a = ctx.input(0).shape;
  const Shape& b = ctx.input(1).shape;
  if (a.size() != 2) ctx.fail("A must be a matrix, got shape ", shape_to_string(a));
  if (b.size() != 2) ctx.fail("B must be a matrix, got shape ", shape_to_string(b));
  const bool trans_a = ctx.attrs().get_int_or("transA", 0) != 0;
  const bool trans_b = ctx.attrs().get_int_or("transB", 0) != 0;
  const int64_t m = trans_a ? a[1] : a[0];
  const int64_t k_a = trans_a ? a[0] : a[1];
  const int64_t k_b = trans_b ? b[1] : b[0];
  const int64_t n = trans_b ? b[0] : b[1];
  merge_dims(ctx, k_a, k_b, "inner dimension (K) of A and B");
  if (ctx.has_input(2)) {
    require_same_dtype(ctx, 2);
    const Shape& c = ctx.input(2).shape;
    if (c.size() > 2) ctx.fail("C must have rank <= 2, got shape ", shape_to_string(c));
    const Shape target{m, n};
    for (size_t i = 0; i < c.size(); ++i) {
      const int64_t want = target[2 - c.size() + i];
      if (c[i] != 1 && c[i] != kDynamicDim && want != kDynamicDim && c[i] != want) {
        ctx.fail("C of shape ", shape_to_string(c), " cannot broadcast to [", m, ", ", n, "]");
      }
    }
  }
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = {m, n};
  ctx.link_dim(0, 0, 0, trans_a ? 1 : 0);  // M
  ctx.link_dim(0, 1, 1, trans_b ? 0 : 1);  // N
}

void infer_matmul(InferContext& ctx) {
  nn::require_float_or_float64_input(ctx, 0, "A");
  require_same_dtype(ctx, 1);
  const Shape& a = ctx.input(0).shape;
  const Shape& b = ctx.input(1).shape;
  if (a.empty() || b.empty()) {
    ctx.fail("MatMul operands must have rank >= 1, got ", shape_to_string(a), " and ",
             shape_to_string(b));
  }
  const int64_t k_a = a.back();
  const int64_t k_b = b.size() == 1 ? b[0] : b[b.size() - 2];
  merge_dims(ctx, k_a, k_b, "inner dimension (K) of A and B");
  const Shape batch_a = a.size() > 2 ? Shape(a.begin(), a.end() - 2) : Shape{};
  const Shape batch_b = b.size() > 2 ? Shape(b.begin(), b.end() - 2) : Shape{};
  Shape out = broadcast_shapes(ctx, batch_a, batch_b);
  if (a.size() >= 2) out.push_back(a[a.size() - 2]);
  if (b.size() >= 2) out.push_back(b.back());
  // kiln's fusion: input 2 is a bias of length N added to every row.
  if (ctx.has_input(2)) {
    require_same_dtype(ctx, 2);
    const Shape& bias = ctx.input(2).shape;
    if (b.size() < 2 || bias.size() != 1 || (bias[0] != kDynamicDim && b.back() != kDynamicDim && bias[0] != b.back())) {
      ctx.fail("bias must have shape [", b.back(), "] and B rank >= 2, got bias ", shape_to_string(bias));
    }
  }
  check_fused_activation(ctx);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
  // Symbolic dims: the batch dims broadcast A's and B's; M is A's, N is B's.
  const size_t batch = std::max(batch_a.size(), batch_b.size());
  for (size_t d = 0; d < batch; ++d) {
    std::vector<DimRef> sources;
    if (d + batch_a.size() >= batch) sources.push_back(DimRef{0, d + batch_a.size() - batch});
    if (d + batch_b.size() >= batch) sources.push_back(DimRef{1, d + batch_b.size() - batch});
    ctx.link_broadcast_dims(0, d, std::move(sources));
  }
  if (a.size() >= 2) ctx.link_dim(0, batch, 0, a.size() - 2);
  if (b.size() >= 2) ctx.link_dim(0, batch + (a.size() >= 2 ? 1 : 0), 1, b.size() - 1);
}

}  // namespace

void register_gemm_ops(OpRegistry& registry) {
  registry.add(OpDef{"Gemm", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_gemm>});
  registry.add(OpDef{"MatMul", 2, 3, 1, 1, {}, &nn::infer_with_node_errors<infer_matmul>});
}

}  // namespace kiln::ops
