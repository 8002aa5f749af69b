// BitCast (opset 26): the input's bytes read as dtype `to`, which must have the input dtype's
// width; the shape stays. Every kiln dtype may be either side.
//   BitCast(input) -> output of dtype `to`
#include "ops/nn_common.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

void infer_bitcast(InferContext& ctx) {
  if (!ctx.attrs().has("to")) ctx.fail("attribute 'to' is required");
  const int64_t to = ctx.attrs().get_int("to");
  if (to < 0 || to > 255 || !is_valid_dtype(static_cast<int>(to))) {
    nn::fail_at(nn::label_of(ctx), ErrorCode::kUnsupported,
                "attribute 'to' must be the ONNX number of a dtype kiln has, got ", to);
  }
  const DType from = ctx.input(0).dtype;
  const auto target = static_cast<DType>(to);
  if (dtype_size(from) != dtype_size(target)) {
    ctx.fail("attribute 'to' (", dtype_name(target), ", ", dtype_size(target) * 8,
             " bits) must have the width of input 0 (", dtype_name(from), ", ",
             dtype_size(from) * 8, " bits)");
  }
  ctx.output(0).dtype = target;
  ctx.output(0).shape = ctx.input(0).shape;
}

}  // namespace

void register_bitcast_ops(OpRegistry& registry) {
  registry.add(OpDef{"BitCast", 1, 1, 1, 1, {}, &nn::infer_with_node_errors<infer_bitcast>});
}

}  // namespace kiln::ops
