// Conformance cases (backend_ops_cases.hpp) of the tensor ops: GEMMs, reductions, shape and
// data-movement ops, indexing, scatters, casts and the ops that make tensors from values.
#include "backend_ops_cases.hpp"

namespace kiln::conformance {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// The element count whose output just exceeds constant folding's 16 MiB limit in `dtype`, so an op
// whose inputs are all constants (shape tensors, Range's scalars) stays a layer of the engine.
int64_t unfolded_elements(DType dtype) {
  return 16 * kMiB / static_cast<int64_t>(dtype_size(dtype)) + 64;
}

void register_gemm_and_reduce_cases() {
  register_op_cases("MatMul", {{.inputs = {input({2, 3, 4}), input({2, 4, 5})}}});
  register_op_cases("Gemm", {{.inputs = {input({3, 4}), input({4, 5})}}});
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax"}) {
    register_op_cases(op, {{.inputs = {input({2, 3, 4}), i64({1}, {1})}}});
  }
  register_op_cases("Softmax",
                    {{.inputs = {input({2, 3, 4})}, .attrs = attrs({{"axis", of_int(-1)}})}});
  register_op_cases("LogSoftmax",
                    {{.inputs = {input({2, 3, 4})}, .attrs = attrs({{"axis", of_int(-1)}})}});
  register_op_cases(
      "Where", {{.inputs = {input({2, 3, 4}, DType::kBool), input({2, 3, 4}), input({2, 3, 4})}}});
}

void register_shape_cases() {
  register_op_cases("Transpose", {{.inputs = {input({2, 3, 4})},
                                   .attrs = attrs({{"perm", of_ints({2, 0, 1})}})}});
  register_op_cases("Reshape", {{.inputs = {input({2, 3, 4}), i64({2}, {6, 4})}}});
  register_op_cases("Unsqueeze", {{.inputs = {input({2, 3, 4}), i64({1}, {0})}}});
  register_op_cases("Squeeze", {{.inputs = {input({2, 1, 4}), i64({1}, {1})}}});
  register_op_cases("Concat", {{.inputs = {input({2, 3, 4}), input({2, 3, 4})},
                                .attrs = attrs({{"axis", of_int(1)}})}});
  // Shape and Size of a static shape are folded; a dynamic dim keeps them layers.
  register_op_cases("Shape", {{.inputs = {{.shape = {2, 3, 4}, .dynamic_dims = {0}}}}});
  register_op_cases("Size", {{.inputs = {{.shape = {2, 3, 4}, .dynamic_dims = {0}}}}});
  register_op_cases("Expand", {{.inputs = {input({3, 1}), i64({3}, {2, 3, 4})}}});
  register_op_cases("Tile", {{.inputs = {input({2, 3, 4}), i64({3}, {2, 1, 3})}}});
  register_op_cases(
      "EyeLike", {{.variant = "k1", .inputs = {input({3, 4})}, .attrs = attrs({{"k", of_int(1)}})},
                  {.variant = "k-2_int32",
                   .inputs = {input({4, 3})},
                   .attrs = attrs({{"k", of_int(-2)},
                                   {"dtype", of_int(static_cast<int64_t>(DType::kInt32))}})}});
  // All inputs constant: sized past the folding limit (as the GPU suite's Range/ConstantOfShape).
  register_op_cases("ConstantOfShape",
                    {{.inputs = {i64({1}, {1})}, .for_dtype = [](OpCase& c, DType dtype) {
                        c.inputs = {i64({1}, {unfolded_elements(dtype)})};
                        auto value = std::make_shared<HostTensor>(dtype, Shape{1});
                        set_element(*value, 0, 3.0);
                        c.attrs = attrs({{"value", Attribute::of_tensor(std::move(value))}});
                      }}});
  register_op_cases("Range",
                    {{.inputs = {}, .for_dtype = [](OpCase& c, DType dtype) {
                        // start, delta and an exactly representable limit that give just
                        // over 16 MiB of output (f16/bf16: 8256 / 2^-10 elements).
                        const int64_t n = unfolded_elements(dtype);
                        double start = -7, delta = 3;
                        if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
                          start = 0, delta = 1.0 / 1024;
                        } else if (dtype == DType::kFloat32) {
                          start = -3.25, delta = 0.5;
                        } else if (dtype == DType::kFloat64) {
                          start = 0.25, delta = 1;
                        }
                        const double limit = dtype == DType::kFloat16 || dtype == DType::kBFloat16
                                                 ? 8256.0
                                                 : start + delta * static_cast<double>(n);
                        c.inputs = {constant({}, values({start})), constant({}, values({limit})),
                                    constant({}, values({delta}))};
                      }}});
}

void register_data_movement_cases() {
  register_op_cases("Slice", {{.variant = "axes_steps",
                               .inputs = {input({3, 4, 5}), i64({2}, {1, -4}), i64({2}, {3, 100}),
                                          i64({2}, {0, 2}), i64({2}, {1, 2})}},
                              {.variant = "negative_step",
                               .inputs = {input({3, 4, 5}), i64({1}, {2}), i64({1}, {-100}),
                                          i64({1}, {1}), i64({1}, {-1})}}});
  // Pads per dim (begin..., end...); reflect needs each below its dim's extent.
  register_op_cases(
      "Pad", {{.variant = "constant",
               .inputs = {input({2, 3, 4}), i64({6}, {0, 1, 2, 1, 0, 1}), input({}, values({2}))}},
              {.variant = "reflect",
               .inputs = {input({2, 3, 4}), i64({6}, {1, 1, 2, 0, 2, 1})},
               .attrs = attrs({{"mode", of_string("reflect")}})},
              {.variant = "edge",
               .inputs = {input({2, 3, 4}), i64({6}, {1, 1, 2, 0, 2, 1})},
               .attrs = attrs({{"mode", of_string("edge")}})},
              {.variant = "wrap_axes",
               .inputs = {input({2, 3, 4}), i64({4}, {2, 1, 1, 3}), absent(), i64({2}, {1, 2})},
               .attrs = attrs({{"mode", of_string("wrap")}})}});
  register_op_cases("DepthToSpace",
                    {{.variant = "DCR",
                      .inputs = {input({1, 8, 2, 3})},
                      .attrs = attrs({{"blocksize", of_int(2)}})},
                     {.variant = "CRD",
                      .inputs = {input({1, 8, 2, 3})},
                      .attrs = attrs({{"blocksize", of_int(2)}, {"mode", of_string("CRD")}})}});
  register_op_cases("SpaceToDepth",
                    {{.variant = "DCR",
                      .inputs = {input({1, 2, 4, 6})},
                      .attrs = attrs({{"blocksize", of_int(2)}})},
                     {.variant = "CRD",
                      .inputs = {input({1, 2, 4, 6})},
                      .attrs = attrs({{"blocksize", of_int(2)}, {"mode", of_string("CRD")}})}});
  register_op_cases("ReverseSequence",
                    {{.inputs = {input({4, 3, 2}), input({3}, DType::kInt64, uniform(0, 4))}}});
  register_op_cases(
      "Compress", {{.variant = "axis1",
                    .inputs = {input({2, 3, 4}), input({3}, DType::kBool, values({1, 0, 1}))},
                    .attrs = attrs({{"axis", of_int(1)}})},
                   {.variant = "flat",
                    .inputs = {input({2, 3}), input({5}, DType::kBool, values({0, 1, 1, 0, 1}))}}});
}

void register_index_cases() {
  // Indices in range, negative ones (counted from the end) included.
  register_op_cases("Gather", {{.inputs = {input({2, 3, 4}), i64({2}, {1, 0})}}});
  register_op_cases("GatherElements",
                    {{.inputs = {input({2, 3, 4}), input({2, 2, 4}, DType::kInt64, uniform(-3, 2))},
                      .attrs = attrs({{"axis", of_int(1)}})}});
  register_op_cases(
      "GatherND",
      {{.variant = "tuples",
        .inputs = {input({2, 3, 4}), input({3, 2}, DType::kInt64, distinct_index_tuples({2, 3}))}},
       {.variant = "batch_dims1",
        .inputs = {input({2, 3, 4}), input({2, 2, 1}, DType::kInt64, uniform(-3, 2))},
        .attrs = attrs({{"batch_dims", of_int(1)}})}});
  // ScatterND: distinct index tuples, so no result depends on the order of duplicate writes.
  register_op_cases(
      "ScatterND",
      {{.variant = "rows",
        .inputs = {input({4, 3}), input({2, 1}, DType::kInt64, distinct_index_tuples({4})),
                   input({2, 3})}},
       {.variant = "add_elements",
        .inputs = {input({4, 3}), input({3, 2}, DType::kInt64, distinct_index_tuples({4, 3})),
                   input({3})},
        .attrs = attrs({{"reduction", of_string("add")}})},
       {.variant = "max_elements",
        .inputs = {input({4, 3}), input({3, 2}, DType::kInt64, distinct_index_tuples({4, 3})),
                   input({3})},
        .attrs = attrs({{"reduction", of_string("max")}})}});
  // ScatterElements along axis 0: without a reduction, each column's indices are distinct.
  register_op_cases(
      "ScatterElements",
      {{.variant = "none",
        .inputs = {input({3, 4}), input({2, 4}, DType::kInt64, values({0, 2, 1, -1, 2, 0, -3, 1})),
                   input({2, 4})}},
       {.variant = "add",
        .inputs = {input({3, 4}), input({2, 4}, DType::kInt64, uniform(-3, 2)), input({2, 4})},
        .attrs = attrs({{"reduction", of_string("add")}})}});
  register_op_cases("CumSum",
                    {{.variant = "axis1", .inputs = {input({2, 3, 4}), i64({}, {1})}},
                     {.variant = "exclusive_reverse",
                      .inputs = {input({2, 3, 4}), i64({1}, {-1})},
                      .attrs = attrs({{"exclusive", of_int(1)}, {"reverse", of_int(1)}})}});
  register_op_cases("CumProd",
                    {{.variant = "axis1", .inputs = {input({2, 3, 4}), i64({}, {1})}},
                     {.variant = "exclusive_reverse",
                      .inputs = {input({2, 3, 4}), i64({1}, {-1})},
                      .attrs = attrs({{"exclusive", of_int(1)}, {"reverse", of_int(1)}})}});
  register_op_cases(
      "TopK", {{.variant = "largest", .inputs = {input({2, 3, 5}), i64({1}, {3})}, .outputs = 2},
               {.variant = "smallest_axis1",
                .inputs = {input({2, 3, 5}), i64({1}, {2})},
                .outputs = 2,
                .attrs = attrs({{"largest", of_int(0)}, {"axis", of_int(1)}})}});
}

// The dtype of the same width `dtype`'s bits are read as (BitCast's `to`).
DType same_width_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return DType::kInt32;
    case DType::kInt32:
      return DType::kFloat32;
    case DType::kFloat64:
      return DType::kInt64;
    case DType::kInt64:
      return DType::kFloat64;
    case DType::kFloat16:
      return DType::kBFloat16;
    case DType::kBFloat16:
      return DType::kInt16;
    case DType::kInt8:
      return DType::kUInt8;
    default:
      return DType::kInt8;  // uint8, bool
  }
}

void register_cast_and_bitwise_cases() {
  // Cast to the input's own dtype is removed by the builder: `to` differs from the dtype under
  // test.
  register_op_cases(
      "Cast", {{.variant = "to_float",
                .inputs = {input({2, 3, 4}, uniform(-10, 10))},
                .for_dtype =
                    [](OpCase& c, DType dtype) {
                      const DType to = dtype == DType::kFloat32 ? DType::kFloat16 : DType::kFloat32;
                      c.attrs = attrs({{"to", of_int(static_cast<int64_t>(to))}});
                    }},
               {.variant = "to_integer",
                .inputs = {input({2, 3, 4}, uniform(-10, 10))},
                .for_dtype = [](OpCase& c, DType dtype) {
                  const DType to = dtype == DType::kInt32 ? DType::kInt8 : DType::kInt32;
                  c.attrs = attrs({{"to", of_int(static_cast<int64_t>(to))}});
                }}});
  register_op_cases("BitCast",
                    {{.inputs = {input({2, 3, 4})}, .for_dtype = [](OpCase& c, DType dtype) {
                        c.attrs =
                            attrs({{"to", of_int(static_cast<int64_t>(same_width_dtype(dtype)))}});
                      }}});
  register_op_cases(
      "BitShift",
      {{.variant = "left",
        .inputs = {input({2, 3, 4}), input({2, 3, 4}, uniform(0, 3))},
        .attrs = attrs({{"direction", of_string("LEFT")}})},
       {.variant = "right",
        .inputs = {input({2, 3, 4}, uniform(-100, 100)), input({2, 3, 4}, uniform(0, 3))},
        .attrs = attrs({{"direction", of_string("RIGHT")}})}});
}

[[maybe_unused]] const bool kRegistered = [] {
  register_gemm_and_reduce_cases();
  register_shape_cases();
  register_data_movement_cases();
  register_index_cases();
  register_cast_and_bitwise_cases();
  return true;
}();

}  // namespace
}  // namespace kiln::conformance
