// MatMulInteger, QLinearMatMul (opsets 10 and 21), ConvInteger, QLinearConv (opset 10) and
// DynamicQuantizeLinear (opset 11). Quantized operands are int8 or uint8; the float8 forms of
// QLinearMatMul-21 are refused naming the input.
#include <algorithm>
#include <string>
#include <vector>

#include "ops/integer_linear.hpp"
#include "ops/nn_common.hpp"
#include "ops/nn_window.hpp"
#include "ops/op_families.hpp"
#include "ops/quantize_params.hpp"

namespace kiln::ops {

IntegerMatMulGeometry resolve_integer_matmul(const NodeRef& node, const Shape& a, const Shape& b) {
  if (a.empty() || b.empty()) {
    node.fail(ErrorCode::kInvalidArgument, "A and B must have rank >= 1, got ", shape_to_string(a),
              " and ", shape_to_string(b));
  }
  IntegerMatMulGeometry g;
  g.m = a.size() >= 2 ? a[a.size() - 2] : 1;
  g.k = a.back();
  const int64_t k_b = b.size() >= 2 ? b[b.size() - 2] : b[0];
  g.n = b.size() >= 2 ? b.back() : 1;
  if (g.k != kDynamicDim && k_b != kDynamicDim && g.k != k_b) {
    node.fail(ErrorCode::kInvalidArgument, "the inner dimension (K) of A ", shape_to_string(a),
              " and B ", shape_to_string(b), " differ: ", g.k, " vs ", k_b);
  }
  if (g.k == kDynamicDim) g.k = k_b;
  g.a_batch = a.size() > 2 ? Shape(a.begin(), a.end() - 2) : Shape{};
  g.b_batch = b.size() > 2 ? Shape(b.begin(), b.end() - 2) : Shape{};
  const size_t rank = std::max(g.a_batch.size(), g.b_batch.size());
  g.batch.resize(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - g.a_batch.size() ? 1 : g.a_batch[i - (rank - g.a_batch.size())];
    const int64_t db = i < rank - g.b_batch.size() ? 1 : g.b_batch[i - (rank - g.b_batch.size())];
    if (da != 1 && db != 1 && da != kDynamicDim && db != kDynamicDim && da != db) {
      node.fail(ErrorCode::kInvalidArgument, "the batch dims of A ", shape_to_string(a), " and B ",
                shape_to_string(b), " do not broadcast");
    }
    g.batch[i] = da == 1 ? db : (db == 1 || db == kDynamicDim ? da : db);
  }
  g.output = g.batch;
  if (a.size() >= 2) g.output.push_back(g.m);
  if (b.size() >= 2) g.output.push_back(g.n);
  return g;
}

QuantAxis resolve_quant_axis(const NodeRef& node, const char* what, const Shape& param,
                             QuantAxis per_axis, int64_t per_axis_length) {
  const bool one_element = std::all_of(param.begin(), param.end(), [](int64_t d) { return d == 1; });
  if (one_element) return QuantAxis::kTensor;
  const char* axis_name = per_axis == QuantAxis::kRow ? "per-row" : "per-column";
  if (param.size() != 1 ||
      (per_axis_length != kDynamicDim && param[0] != kDynamicDim && param[0] != per_axis_length)) {
    node.fail(ErrorCode::kInvalidArgument, what, " must have one element or be ", axis_name,
              " (1-D of ", per_axis_length, " elements), got shape ", shape_to_string(param));
  }
  return per_axis;
}

namespace {

constexpr std::initializer_list<DType> kInteger8 = {DType::kInt8, DType::kUInt8};

void require_int8(const InferContext& ctx, size_t index, const char* what) {
  require_dtype(ctx, std::string("input ") + std::to_string(index) + " (" + what + ")",
                ctx.input(index).dtype, kInteger8);
}

// A zero point must have the dtype of the operand it offsets.
void require_zero_point_dtype(const InferContext& ctx, size_t zero_point, size_t operand,
                              const char* what) {
  if (!ctx.has_input(zero_point)) return;
  if (ctx.input(zero_point).dtype != ctx.input(operand).dtype) {
    ctx.fail("input ", zero_point, " (", what, ") has dtype ", dtype_name(ctx.input(zero_point).dtype),
             ", expected its operand's dtype ", dtype_name(ctx.input(operand).dtype));
  }
}

void require_one_element(const InferContext& ctx, size_t index, const char* what) {
  const Shape& s = ctx.input(index).shape;
  if (!std::all_of(s.begin(), s.end(), [](int64_t d) { return d == 1 || d == kDynamicDim; })) {
    ctx.fail("input ", index, " (", what, ") must have one element (per tensor), got shape ",
             shape_to_string(s));
  }
}

void infer_matmul_integer(InferContext& ctx) {
  require_int8(ctx, 0, "A");
  require_int8(ctx, 1, "B");
  require_zero_point_dtype(ctx, 2, 0, "a_zero_point");
  require_zero_point_dtype(ctx, 3, 1, "b_zero_point");
  const IntegerMatMulGeometry g =
      resolve_integer_matmul(node_ref(ctx), ctx.input(0).shape, ctx.input(1).shape);
  if (ctx.has_input(2)) {
    resolve_quant_axis(node_ref(ctx), "input 2 (a_zero_point)", ctx.input(2).shape, QuantAxis::kRow, g.m);
  }
  if (ctx.has_input(3)) {
    resolve_quant_axis(node_ref(ctx), "input 3 (b_zero_point)", ctx.input(3).shape, QuantAxis::kColumn,
                       g.n);
  }
  ctx.output(0).dtype = DType::kInt32;
  ctx.output(0).shape = g.output;
}

constexpr std::initializer_list<DType> kScaleTypes = {DType::kFloat32, DType::kFloat16,
                                                      DType::kBFloat16};

void infer_qlinear_matmul(InferContext& ctx) {
  require_int8(ctx, 0, "a");
  require_int8(ctx, 3, "b");
  require_int8(ctx, 7, "y_zero_point");
  require_zero_point_dtype(ctx, 2, 0, "a_zero_point");
  require_zero_point_dtype(ctx, 5, 3, "b_zero_point");
  const DType scale = ctx.input(1).dtype;
  require_dtype(ctx, "input 1 (a_scale)", scale, kScaleTypes);
  for (const size_t i : {size_t{4}, size_t{6}}) {
    if (ctx.input(i).dtype != scale) {
      ctx.fail("input ", i, (i == 4 ? " (b_scale)" : " (y_scale)"), " has dtype ",
               dtype_name(ctx.input(i).dtype), ", expected a_scale's ", dtype_name(scale));
    }
  }
  check_known_scale(ctx, 1, "a_scale");
  check_known_scale(ctx, 4, "b_scale");
  check_known_scale(ctx, 6, "y_scale");
  const IntegerMatMulGeometry g =
      resolve_integer_matmul(node_ref(ctx), ctx.input(0).shape, ctx.input(3).shape);
  const NodeRef node = node_ref(ctx);
  resolve_quant_axis(node, "input 1 (a_scale)", ctx.input(1).shape, QuantAxis::kRow, g.m);
  resolve_quant_axis(node, "input 2 (a_zero_point)", ctx.input(2).shape, QuantAxis::kRow, g.m);
  resolve_quant_axis(node, "input 4 (b_scale)", ctx.input(4).shape, QuantAxis::kColumn, g.n);
  resolve_quant_axis(node, "input 5 (b_zero_point)", ctx.input(5).shape, QuantAxis::kColumn, g.n);
  resolve_quant_axis(node, "input 6 (y_scale)", ctx.input(6).shape, QuantAxis::kColumn, g.n);
  resolve_quant_axis(node, "input 7 (y_zero_point)", ctx.input(7).shape, QuantAxis::kColumn, g.n);
  ctx.output(0).dtype = ctx.input(7).dtype;
  ctx.output(0).shape = g.output;
}

// Conv's geometry for X (input 0) and W (input `w_index`): the output shape [N, M, spatial...].
Shape integer_conv_shape(const InferContext& ctx, size_t w_index) {
  nn::require_min_rank(ctx, 0, "X", 3);
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(w_index).shape;
  if (w.size() != x.size()) {
    ctx.fail("W (input ", w_index, ") must have the rank of X (", x.size(), "), got ", shape_to_string(w));
  }
  const int64_t group = int_attr(ctx, "group", 1);
  if (group < 1) ctx.fail("attribute 'group' must be >= 1, got ", group);
  if (x[1] != kDynamicDim && w[1] != kDynamicDim && x[1] != w[1] * group) {
    ctx.fail("X has ", x[1], " channels but W expects ", w[1], " x group ", group, " = ", w[1] * group);
  }
  if (w[0] != kDynamicDim && w[0] % group != 0) {
    ctx.fail("W has ", w[0], " output channels, not divisible by group ", group);
  }
  const nn::WindowGeometry geometry =
      nn::resolve_window(nn::label_of(ctx), ctx.attrs(), std::vector<int64_t>(x.begin() + 2, x.end()),
                         nn::kernel_extents(ctx, w), false);
  Shape out{x[0], w[0]};
  out.insert(out.end(), geometry.output.begin(), geometry.output.end());
  return out;
}

void infer_conv_integer(InferContext& ctx) {
  require_int8(ctx, 0, "x");
  require_int8(ctx, 1, "w");
  require_zero_point_dtype(ctx, 2, 0, "x_zero_point");
  require_zero_point_dtype(ctx, 3, 1, "w_zero_point");
  if (ctx.has_input(2)) require_one_element(ctx, 2, "x_zero_point");
  const Shape out = integer_conv_shape(ctx, 1);
  if (ctx.has_input(3)) {
    resolve_quant_axis(node_ref(ctx), "input 3 (w_zero_point)", ctx.input(3).shape, QuantAxis::kRow,
                       ctx.input(1).shape[0]);
  }
  ctx.output(0).dtype = DType::kInt32;
  ctx.output(0).shape = out;
}

void infer_qlinear_conv(InferContext& ctx) {
  require_int8(ctx, 0, "x");
  require_int8(ctx, 3, "w");
  require_int8(ctx, 7, "y_zero_point");
  require_zero_point_dtype(ctx, 2, 0, "x_zero_point");
  require_zero_point_dtype(ctx, 5, 3, "w_zero_point");
  for (const auto& [index, what] : {std::pair<size_t, const char*>{1, "x_scale"}, {4, "w_scale"}, {6, "y_scale"}}) {
    require_dtype(ctx, std::string("input ") + std::to_string(index) + " (" + what + ")",
                  ctx.input(index).dtype, {DType::kFloat32});
    check_known_scale(ctx, index, what);
  }
  require_one_element(ctx, 1, "x_scale");
  require_one_element(ctx, 2, "x_zero_point");
  require_one_element(ctx, 6, "y_scale");
  require_one_element(ctx, 7, "y_zero_point");
  const Shape out = integer_conv_shape(ctx, 3);
  const int64_t m = ctx.input(3).shape[0];
  resolve_quant_axis(node_ref(ctx), "input 4 (w_scale)", ctx.input(4).shape, QuantAxis::kRow, m);
  resolve_quant_axis(node_ref(ctx), "input 5 (w_zero_point)", ctx.input(5).shape, QuantAxis::kRow, m);
  if (ctx.has_input(8)) {
    require_dtype(ctx, "input 8 (B)", ctx.input(8).dtype, {DType::kInt32});
    const Shape& b = ctx.input(8).shape;
    if (b.size() != 1 || (b[0] != kDynamicDim && m != kDynamicDim && b[0] != m)) {
      ctx.fail("input 8 (B) must have shape [", m, "], got ", shape_to_string(b));
    }
  }
  ctx.output(0).dtype = ctx.input(7).dtype;
  ctx.output(0).shape = out;
}

void infer_dynamic_quantize_linear(InferContext& ctx) {
  require_dtype(ctx, "input 0 (x)", ctx.input(0).dtype, {DType::kFloat32});
  ctx.output(0).dtype = DType::kUInt8;
  ctx.output(0).shape = ctx.input(0).shape;
  ctx.output(1).dtype = DType::kFloat32;
  ctx.output(1).shape = {};
  ctx.output(2).dtype = DType::kUInt8;
  ctx.output(2).shape = {};
}

}  // namespace

void register_integer_linear_ops(OpRegistry& registry) {
  registry.add(OpDef{"MatMulInteger", 2, 4, 1, 1, {}, &nn::infer_with_node_errors<infer_matmul_integer>});
  registry.add(OpDef{"QLinearMatMul", 8, 8, 1, 1, {}, &nn::infer_with_node_errors<infer_qlinear_matmul>});
  registry.add(OpDef{"ConvInteger", 2, 4, 1, 1, {}, &nn::infer_with_node_errors<infer_conv_integer>});
  registry.add(OpDef{"QLinearConv", 8, 9, 1, 1, {}, &nn::infer_with_node_errors<infer_qlinear_conv>});
  registry.add(OpDef{"DynamicQuantizeLinear", 1, 1, 3, 3, {},
                     &nn::infer_with_node_errors<infer_dynamic_quantize_linear>});
}

}  // namespace kiln::ops
