// The ai.onnx.ml ops kiln runs (the importer maps them from their domain; string tensors and the
// domain's other ops stay refused):
//   Binarizer(X) -> Y: 1 where X > threshold (attribute, 0.0), else 0; X's dtype and shape
//     (float32, float64, int32, int64).
//   ArrayFeatureExtractor(X, Y int64) -> Z: X's last axis gathered at the indices Y (all of its
//     elements, flattened); Z is X.shape[:-1] + [numel(Y)], or [1, numel(Y)] for a 1-D X.
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

bool is_ml_numeric(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat64 || dtype == DType::kInt32 ||
         dtype == DType::kInt64;
}

void require_ml_numeric(const InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  if (!is_ml_numeric(dtype)) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported, "input 0 (X) has dtype ",
                dtype_name(dtype), "; supported: float32, float64, int32, int64");
  }
}

void infer_binarizer(InferContext& ctx) {
  require_ml_numeric(ctx);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = ctx.input(0).shape;
}

void infer_array_feature_extractor(InferContext& ctx) {
  require_ml_numeric(ctx);
  const Shape& x = ctx.input(0).shape;
  if (x.empty()) ctx.fail("input 0 (X) must have rank >= 1, got a scalar");
  if (ctx.input(1).dtype != DType::kInt64) {
    ctx.fail("input 1 (Y) must be int64, got ", dtype_name(ctx.input(1).dtype));
  }
  const Shape& y = ctx.input(1).shape;
  const int64_t count = nn::product_or_dynamic(y, 0, y.size());
  Shape out = x.size() == 1 ? Shape{1} : Shape(x.begin(), x.end() - 1);
  out.push_back(count);
  ctx.output(0).dtype = ctx.input(0).dtype;
  ctx.output(0).shape = std::move(out);
}

}  // namespace

void register_ml_ops(OpRegistry& registry) {
  registry.add(OpDef{"Binarizer", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_binarizer>, false,
                     "ai.onnx.ml"});
  registry.add(OpDef{"ArrayFeatureExtractor", 2, 2, 1, 1, {},
                     &nn::infer_with_node_errors<infer_array_feature_extractor>, false, "ai.onnx.ml"});
}

}  // namespace kiln::ops
