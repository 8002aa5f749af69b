// Conformance cases (backend_ops_cases.hpp) of the neural-network ops: convolutions, pooling,
// normalisations, resizing and sampling, attention, recurrent and sequence-model layers, and the
// builder's FusedGroup and FusedAttention nodes, written here as the builder writes them.
#include <memory>

#include "backend_ops_cases.hpp"
#include "ops/fused_group.hpp"

namespace kiln::conformance {
namespace {

// Window attributes: kernel 3x3, stride 2, one pixel of padding on each side.
AttributeMap window_3x3_stride2(
    std::initializer_list<std::pair<std::string, Attribute>> more = {}) {
  AttributeMap map = attrs({{"kernel_shape", of_ints({3, 3})},
                            {"strides", of_ints({2, 2})},
                            {"pads", of_ints({1, 1, 1, 1})}});
  for (const auto& [name, value] : more) map.set(name, value);
  return map;
}

void register_convolution_and_pooling_cases() {
  register_op_cases("ConvTranspose",
                    {{.variant = "stride2_output_padding",
                      .inputs = {input({1, 2, 4, 4}), constant({2, 3, 3, 3}, uniform(-1, 1)),
                                 constant({3}, uniform(-1, 1))},
                      .attrs = window_3x3_stride2({{"output_padding", of_ints({1, 1})}})},
                     {.variant = "group2_dilated",
                      .inputs = {input({1, 4, 3, 3}), constant({4, 1, 2, 2}, uniform(-1, 1))},
                      .attrs = attrs({{"group", of_int(2)}, {"dilations", of_ints({2, 2})}})}});
  register_op_cases("DeformConv",
                    {{.inputs = {input({1, 2, 5, 5}), constant({4, 2, 3, 3}, uniform(-1, 1)),
                                 input({1, 18, 3, 3}), constant({4}, uniform(-1, 1)),
                                 input({1, 9, 3, 3}, uniform(0, 1))},
                      .attrs = attrs({{"kernel_shape", of_ints({3, 3})}})}});
  // Col2Im: [N, C * 2 * 2, L] columns of 2x2 blocks of a 4x4 image, L = 3 * 3 positions.
  register_op_cases("Col2Im", {{.inputs = {input({1, 8, 9}), i64({2}, {4, 4}), i64({2}, {2, 2})}}});
  register_op_cases(
      "MaxPool",
      {{.variant = "3x3_stride2", .inputs = {input({1, 2, 5, 5})}, .attrs = window_3x3_stride2()},
       {.variant = "indices",
        .inputs = {input({1, 2, 5, 5})},
        .outputs = 2,
        .attrs = window_3x3_stride2()},
       {.variant = "dilated_ceil",
        .inputs = {input({1, 2, 6, 6})},
        .attrs = attrs({{"kernel_shape", of_ints({2, 2})},
                        {"strides", of_ints({2, 2})},
                        {"dilations", of_ints({2, 2})},
                        {"ceil_mode", of_int(1)}})}});
  register_op_cases(
      "AveragePool",
      {{.variant = "3x3_stride2", .inputs = {input({1, 2, 5, 5})}, .attrs = window_3x3_stride2()},
       {.variant = "count_include_pad",
        .inputs = {input({1, 2, 5, 5})},
        .attrs = window_3x3_stride2({{"count_include_pad", of_int(1)}})},
       {.variant = "ceil_1d",
        .inputs = {input({2, 3, 7})},
        .attrs = attrs({{"kernel_shape", of_ints({2})},
                        {"strides", of_ints({2})},
                        {"ceil_mode", of_int(1)}})}});
  register_op_cases("LpPool", {{.variant = "p2",
                                .inputs = {input({1, 2, 5, 5})},
                                .attrs = attrs({{"kernel_shape", of_ints({2, 2})}})},
                               {.variant = "p3_stride2",
                                .inputs = {input({1, 2, 5, 5})},
                                .attrs = window_3x3_stride2({{"p", of_int(3)}})}});
  // MaxUnpool's indices: flat positions in the unpooled [1, 2, 4, 4], one per 2x2 window.
  const Fill unpool_indices = [](HostTensor& t, std::mt19937& rng) {
    std::uniform_int_distribution<int64_t> offset(0, 1);
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w) {
          const int64_t position = c * 16 + (2 * h + offset(rng)) * 4 + 2 * w + offset(rng);
          set_element(t, (c * 2 + h) * 2 + w, static_cast<double>(position));
        }
  };
  register_op_cases(
      "MaxUnpool",
      {{.variant = "2x2",
        .inputs = {input({1, 2, 2, 2}), input({1, 2, 2, 2}, DType::kInt64, unpool_indices)},
        .attrs = attrs({{"kernel_shape", of_ints({2, 2})}, {"strides", of_ints({2, 2})}})},
       {.variant = "output_shape",
        .inputs = {input({1, 2, 2, 2}), input({1, 2, 2, 2}, DType::kInt64, unpool_indices),
                   i64({4}, {1, 2, 5, 5})},
        .attrs = attrs({{"kernel_shape", of_ints({2, 2})}, {"strides", of_ints({2, 2})}})}});
}

void register_normalization_cases() {
  // The parameters are graph inputs: constant ones become a multiply-add in cuda engines
  // (passes/batch_norm_affine.hpp), which would leave the kernel untested.
  register_op_cases("BatchNormalization",
                    {{.inputs = {input({2, 3, 4, 5}), input({3}), input({3}), input({3}),
                                 input({3}, uniform(0.5, 1.5))}}});
  register_op_cases("InstanceNormalization",
                    {{.inputs = {input({2, 3, 4, 5}), input({3}), input({3})}}});
  register_op_cases("GroupNormalization", {{.inputs = {input({2, 4, 3, 3}), input({4}), input({4})},
                                            .attrs = attrs({{"num_groups", of_int(2)}})}});
  register_op_cases("LayerNormalization",
                    {{.variant = "last_axis", .inputs = {input({2, 3, 4}), input({4}), input({4})}},
                     {.variant = "axis1_statistics",
                      .inputs = {input({2, 3, 4}), input({3, 4})},
                      .outputs = 3,
                      .attrs = attrs({{"axis", of_int(1)}})}});
  register_op_cases(
      "LRN", {{.inputs = {input({1, 5, 3, 3})},
               .attrs = attrs(
                   {{"size", of_int(3)}, {"alpha", of_float(0.5f)}, {"beta", of_float(0.75f)}})}});
}

void register_resize_and_sampling_cases() {
  // Nearest and linear (the modes the CUDA kernel has) with scales and with sizes.
  register_op_cases(
      "Resize",
      {{.variant = "nearest_scales",
        .inputs = {input({1, 2, 3, 4}), absent(),
                   constant({4}, DType::kFloat32, values({1, 1, 2, 1.5}))},
        .attrs = attrs({{"mode", of_string("nearest")}})},
       {.variant = "nearest_sizes_asymmetric_floor",
        .inputs = {input({1, 2, 3, 4}), absent(), absent(), i64({4}, {1, 2, 6, 3})},
        .attrs = attrs({{"mode", of_string("nearest")},
                        {"coordinate_transformation_mode", of_string("asymmetric")},
                        {"nearest_mode", of_string("floor")}})},
       {.variant = "linear_downscale",
        .inputs = {input({1, 2, 4, 6}), absent(),
                   constant({4}, DType::kFloat32, values({1, 1, 0.5, 0.75}))},
        .attrs = attrs({{"mode", of_string("linear")}})},
       {.variant = "linear_sizes_align_corners",
        .inputs = {input({1, 2, 3, 4}), absent(), absent(), i64({4}, {1, 2, 5, 7})},
        .attrs = attrs({{"mode", of_string("linear")},
                        {"coordinate_transformation_mode", of_string("align_corners")}})}});
  register_op_cases(
      "GridSample",
      {{.variant = "linear",
        .inputs = {input({1, 2, 4, 5}), input({1, 3, 3, 2}, uniform(-1.1, 1.1))}},
       {.variant = "nearest_border",
        .inputs = {input({1, 2, 4, 5}), input({1, 3, 3, 2}, uniform(-1.1, 1.1))},
        .attrs = attrs({{"mode", of_string("nearest")}, {"padding_mode", of_string("border")}})},
       {.variant = "cubic_reflection_aligned",
        .inputs = {input({1, 2, 4, 5}), input({1, 3, 3, 2}, uniform(-1.1, 1.1))},
        .attrs = attrs({{"mode", of_string("cubic")},
                        {"padding_mode", of_string("reflection")},
                        {"align_corners", of_int(1)}})}});
  register_op_cases("AffineGrid",
                    {{.variant = "2d", .inputs = {input({2, 2, 3}), i64({4}, {2, 3, 4, 5})}},
                     {.variant = "3d_aligned",
                      .inputs = {input({1, 3, 4}), i64({5}, {1, 2, 3, 4, 5})},
                      .attrs = attrs({{"align_corners", of_int(1)}})}});
  // Regions (x1, y1, x2, y2) inside the 6x6 image.
  register_op_cases(
      "RoiAlign", {{.variant = "avg",
                    .inputs = {input({1, 2, 6, 6}),
                               input({3, 4}, values({0, 0, 3, 3, 1, 2, 5, 5, 2.5, 1, 4, 5.5})),
                               i64({3}, {0, 0, 0})},
                    .attrs = attrs({{"output_height", of_int(2)},
                                    {"output_width", of_int(2)},
                                    {"sampling_ratio", of_int(2)}})},
                   {.variant = "max_scaled",
                    .inputs = {input({2, 2, 6, 6}),
                               input({2, 4}, values({0, 0, 7, 9, 2, 1, 11, 11})), i64({2}, {1, 0})},
                    .attrs = attrs({{"mode", of_string("max")},
                                    {"output_height", of_int(3)},
                                    {"output_width", of_int(2)},
                                    {"spatial_scale", of_float(0.5f)}})}});
}

// FusedGroup as the fusion grouping writes it: members Mul(x0, x1), Add(m0, x0), a ReduceSum of
// m1 over the last axis (its axes an attribute value), and Sub(m1, m2); outputs m3 and m2.
AttributeMap fused_group_attributes() {
  ops::GroupProgram program;
  program.num_inputs = 2;
  const auto member = [&](std::string op, std::vector<int64_t> inputs,
                          std::vector<std::shared_ptr<const HostTensor>> member_values,
                          AttributeMap member_attrs = {}) {
    ops::GroupMember m;
    m.name = "member" + std::to_string(program.members.size());
    m.op = std::move(op);
    m.inputs = std::move(inputs);
    m.values = std::move(member_values);
    m.attrs = std::move(member_attrs);
    program.members.push_back(std::move(m));
  };
  const int64_t l = 2;  // member m's output is reference l + m
  auto axes = std::make_shared<HostTensor>(DType::kInt64, Shape{1});
  axes->data<int64_t>()[0] = -1;
  member("Mul", {0, 1}, {nullptr, nullptr});
  member("Add", {l + 0, 0}, {nullptr, nullptr});
  member("ReduceSum", {l + 1, ops::kGroupAttributeValue}, {nullptr, axes},
         attrs({{"keepdims", of_int(1)}}));
  member("Sub", {l + 1, l + 2}, {nullptr, nullptr});
  program.outputs = {3, 2};
  AttributeMap map;
  ops::encode_group(program, map);
  return map;
}

void register_attention_and_fused_cases() {
  register_op_cases("FusedGroup", {{.inputs = {input({2, 3, 4}), input({2, 3, 4})},
                                    .outputs = 2,
                                    .attrs = fused_group_attributes()}});
  // FusedAttention: head dim 16 (the CUDA kernel's tensor cores take multiples of 16), an additive
  // mask; packed: one [B, S, 3, H, D] QKV input.
  register_op_cases("FusedAttention",
                    {{.variant = "bhsd_mask",
                      .inputs = {input({1, 2, 8, 16}), input({1, 2, 8, 16}), input({1, 2, 8, 16}),
                                 input({1, 1, 8, 8})},
                      .attrs = attrs({{"scale", of_float(0.25f)}})},
                     {.variant = "bshd",
                      .inputs = {input({1, 8, 2, 16}), input({1, 8, 2, 16}), input({1, 8, 2, 16})},
                      .attrs = attrs({{"scale", of_float(0.25f)},
                                      {"q_layout", of_string("BSHD")},
                                      {"k_layout", of_string("BSHD")},
                                      {"v_layout", of_string("BSHD")},
                                      {"out_layout", of_string("BSHD")}})},
                     {.variant = "qkv_packed",
                      .inputs = {input({1, 8, 3, 2, 16})},
                      .attrs = attrs({{"scale", of_float(0.25f)}, {"qkv_packed", of_int(1)}})}});
  register_op_cases(
      "Attention",
      {{.variant = "bhsd",
        .inputs = {input({1, 2, 3, 8}), input({1, 2, 4, 8}), input({1, 2, 4, 8})}},
       {.variant = "rank3_gqa_causal_mask",
        .inputs = {input({1, 3, 32}), input({1, 4, 16}), input({1, 4, 16}), input({1, 1, 3, 4})},
        .attrs = attrs(
            {{"q_num_heads", of_int(4)}, {"kv_num_heads", of_int(2)}, {"is_causal", of_int(1)}})}});
  // Q [1, 3, 2 heads * 4], K [1, 3, 1 head * 4], V [1, 3, 1 head * 4].
  register_op_cases(
      "LinearAttention",
      {{.variant = "linear",
        .inputs = {input({1, 3, 8}), input({1, 3, 4}), input({1, 3, 4})},
        .attrs = attrs({{"q_num_heads", of_int(2)},
                        {"kv_num_heads", of_int(1)},
                        {"update_rule", of_string("linear")}})},
       {.variant = "gated_delta_state",
        .inputs = {input({1, 3, 8}), input({1, 3, 4}), input({1, 3, 4}), input({1, 1, 4, 4}),
                   input({1, 3, 1}, uniform(-1, 0)), input({1, 3, 1}, uniform(0, 1))},
        .outputs = 2,
        .attrs = attrs({{"q_num_heads", of_int(2)}, {"kv_num_heads", of_int(1)}})}});
  register_op_cases("RotaryEmbedding",
                    {{.variant = "position_ids",
                      .inputs = {input({1, 2, 3, 8}), input({4, 4}), input({4, 4}),
                                 input({1, 3}, DType::kInt64, uniform(0, 3))}},
                     {.variant = "rank3_interleaved_per_token",
                      .inputs = {input({1, 3, 16}), input({1, 3, 4}), input({1, 3, 4})},
                      .attrs = attrs({{"num_heads", of_int(2)}, {"interleaved", of_int(1)}})}});
  register_op_cases("CausalConvWithState",
                    {{.variant = "state",
                      .inputs = {input({2, 3, 6}), input({3, 1, 3}), input({3}), input({2, 3, 2})},
                      .outputs = 2},
                     {.variant = "silu",
                      .inputs = {input({2, 3, 6}), input({3, 1, 3})},
                      .attrs = attrs({{"activation", of_string("silu")}})}});
}

// X [seq 3, batch 2, input 4], hidden 5; W, R and B sized for `gates` gates per direction.
OpCase recurrent_case(int64_t gates, size_t outputs) {
  return {.variant = "forward",
          .inputs = {input({3, 2, 4}), input({1, gates * 5, 4}), input({1, gates * 5, 5}),
                     input({1, 2 * gates * 5})},
          .outputs = outputs,
          .attrs = attrs({{"hidden_size", of_int(5)}})};
}

void register_recurrent_cases() {
  register_op_cases("RNN", {recurrent_case(1, 2)});
  register_op_cases("GRU", {recurrent_case(3, 2)});
  // Bidirectional: per-row lengths, initial states and peepholes.
  register_op_cases(
      "LSTM",
      {recurrent_case(4, 3),
       {.variant = "bidirectional_lengths_peepholes",
        .inputs = {input({3, 2, 4}), input({2, 20, 4}), input({2, 20, 5}), input({2, 40}),
                   input({2}, DType::kInt32, values({3, 1})), input({2, 2, 5}), input({2, 2, 5}),
                   input({2, 15})},
        .outputs = 3,
        .attrs = attrs({{"hidden_size", of_int(5)}, {"direction", of_string("bidirectional")}})}});
}

[[maybe_unused]] const bool kRegistered = [] {
  register_convolution_and_pooling_cases();
  register_normalization_cases();
  register_resize_and_sampling_cases();
  register_attention_and_fused_cases();
  register_recurrent_cases();
  return true;
}();

}  // namespace
}  // namespace kiln::conformance
