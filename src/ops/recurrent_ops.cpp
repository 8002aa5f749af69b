// RNN, GRU and LSTM (opsets 7 to 22; layout from 14): one layer over a sequence, in one or both
// directions. Inputs X [seq, batch, input] ([batch, seq, input] with layout = 1), W
// [directions, gates * hidden, input], R [directions, gates * hidden, hidden], optional B
// [directions, 2 * gates * hidden], sequence_lens [batch] (int32), initial_h [directions, batch,
// hidden] ([batch, directions, hidden] with layout = 1) and for LSTM initial_c (as initial_h) and
// P [directions, 3 * hidden]. Outputs, each optional: Y [seq, directions, batch, hidden] ([batch,
// seq, directions, hidden] with layout = 1), Y_h [directions, batch, hidden] and for LSTM Y_c (both
// [batch, directions, hidden] with layout = 1). gates is 1 (RNN), 3 (GRU) or 4 (LSTM).
#include <string>
#include <string_view>

#include "ops/nn_recurrent.hpp"
#include "ops/op_families.hpp"

namespace kiln::ops {
namespace {

using nn::label_of;


// Fails unless input `index` (when present) is `rank`-D with each dim agreeing with `want`.
void require_input_shape(const InferContext& ctx, size_t index, std::string_view what, const Shape& want,
                         std::string_view form) {
  if (!ctx.has_input(index)) return;
  const Shape& got = ctx.input(index).shape;
  bool ok = got.size() == want.size();
  for (size_t d = 0; ok && d < got.size(); ++d) ok = nn::agree(got[d], want[d]);
  if (!ok) {
    ctx.fail("input ", index, " (", what, ") must be ", shape_to_string(want), " (", form, "), got ",
             shape_to_string(got));
  }
}

void infer_recurrent(InferContext& ctx) {
  const nn::RecurrentParams params = nn::read_recurrent_params(label_of(ctx), ctx.attrs());
  const bool lstm = params.cell == nn::RecurrentCell::kLstm;
  const DType dtype = ctx.input(0).dtype;
  if (!nn::is_float_compute_dtype(dtype) && dtype != DType::kFloat64) {
    nn::fail_at(label_of(ctx), ErrorCode::kUnsupported, "input 0 (X) has dtype ", dtype_name(dtype),
                "; supported: float32, float16, bfloat16, float64");
  }
  static constexpr std::string_view kNames[] = {"X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"};
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (i == 4 || !ctx.has_input(i)) continue;
    nn::require_same_dtype(ctx, i, kNames[i]);
  }
  if (ctx.has_input(4) && ctx.input(4).dtype != DType::kInt32 && ctx.input(4).dtype != DType::kInt64) {
    ctx.fail("input 4 (sequence_lens) must be int32, got ", dtype_name(ctx.input(4).dtype));
  }

  const Shape& x = ctx.input(0).shape;
  if (x.size() != 3) {
    ctx.fail("input 0 (X) must be 3-D (", params.batch_first ? "[batch, seq, input]" : "[seq, batch, input]",
             "), got ", shape_to_string(x));
  }
  const int64_t seq = params.batch_first ? x[1] : x[0];
  const int64_t batch = params.batch_first ? x[0] : x[1];
  const int64_t input_size = x[2];
  const Shape& r = ctx.input(2).shape;
  int64_t hidden = params.hidden_size;
  if (hidden == -1) hidden = r.size() == 3 ? r[2] : kDynamicDim;
  const int64_t dirs = params.num_directions;
  const int64_t gates = params.gates();
  const int64_t gate_rows = hidden == kDynamicDim ? kDynamicDim : gates * hidden;
  // W, R and B's rows, as the messages name them.
  const std::string rows = gates == 1 ? "hidden_size" : detail::concat(gates, " * hidden_size");
  const std::string hidden_note = detail::concat(" with hidden_size ", hidden);
  require_input_shape(ctx, 1, "W", {dirs, gate_rows, input_size},
                      detail::concat("[num_directions, ", rows, ", input_size]", hidden_note));
  require_input_shape(ctx, 2, "R", {dirs, gate_rows, hidden},
                      detail::concat("[num_directions, ", rows, ", hidden_size]", hidden_note));
  require_input_shape(ctx, 3, "B", {dirs, gate_rows == kDynamicDim ? kDynamicDim : 2 * gate_rows},
                      detail::concat("[num_directions, 2 * ", rows, "]", hidden_note));
  require_input_shape(ctx, 4, "sequence_lens", {batch}, "[batch_size]");
  const Shape state = params.batch_first ? Shape{batch, dirs, hidden} : Shape{dirs, batch, hidden};
  const char* state_form = params.batch_first ? "[batch_size, num_directions, hidden_size]"
                                              : "[num_directions, batch_size, hidden_size]";
  require_input_shape(ctx, 5, "initial_h", state, state_form);
  if (lstm) {
    require_input_shape(ctx, 6, "initial_c", state, state_form);
    require_input_shape(ctx, 7, "P", {dirs, hidden == kDynamicDim ? kDynamicDim : 3 * hidden},
                        "[num_directions, 3 * hidden_size]");
  }

  // Fill in what the other inputs know when X or R left a dim dynamic.
  const auto known = [&](int64_t dim, size_t input, size_t axis) {
    if (dim != kDynamicDim || !ctx.has_input(input)) return dim;
    const Shape& s = ctx.input(input).shape;
    return axis < s.size() ? s[axis] : dim;
  };
  int64_t out_batch = known(batch, 4, 0);
  out_batch = known(out_batch, 5, params.batch_first ? 0 : 1);
  if (hidden == kDynamicDim && ctx.has_input(5)) hidden = ctx.input(5).shape[2];

  const Shape y = params.batch_first ? Shape{out_batch, seq, dirs, hidden} : Shape{seq, dirs, out_batch, hidden};
  const Shape y_state =
      params.batch_first ? Shape{out_batch, dirs, hidden} : Shape{dirs, out_batch, hidden};
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    ctx.output(i).dtype = dtype;
    ctx.output(i).shape = i == 0 ? y : y_state;
  }
}

}  // namespace

void register_recurrent_ops(OpRegistry& registry) {
  registry.add(OpDef{"RNN", 3, 6, 1, 2, {}, &nn::infer_with_node_errors<infer_recurrent>});
  registry.add(OpDef{"GRU", 3, 6, 1, 2, {}, &nn::infer_with_node_errors<infer_recurrent>});
  registry.add(OpDef{"LSTM", 3, 8, 1, 3, {}, &nn::infer_with_node_errors<infer_recurrent>});
}

}  // namespace kiln::ops
