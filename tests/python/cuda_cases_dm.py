"""Conformance cases (CUDA vs CPU backend) for the CUDA data movement, shape and resize families:
src/backends/cuda/{data_movement,shape,resize}_kernels.cu and strided_copy.cu.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2], integers in [-5, 5]),
(name, dtype, values, "const") for an initializer, or None for an absent optional input.

Notes for readers:
- Nodes whose inputs are all constants are folded at build time unless their output exceeds the
  folder's 16 MiB limit, so the ConstantOfShape and Range cases use outputs just above it (the
  small ones check the folded path only). Shape and Size of static shapes are always folded.
- Runtime index inputs (Gather, GatherElements) index axes of size >= 6 so that every random value
  in [-5, 5] is in range; ScatterND indices are constants without duplicates (duplicate updates
  have no defined order on the GPU).
"""

from onnx import TensorProto, helper

F32, F16, I64, I32 = "float32", "float16", "int64", "int32"
INT64_MAX = 9223372036854775807


def const(name, dtype, values):
    return (name, dtype, values, "const")


def value_tensor(dtype, value):
    return helper.make_tensor("value", dtype, [1], [value])


CASES = []


def add(case_id, op, inputs, attrs=None, opset=18, num_outputs=None):
    entry = (case_id, op, inputs, attrs or {}, opset)
    CASES.append(entry + ((num_outputs,) if num_outputs else ()))


# ---- Transpose -----------------------------------------------------------------------------------
add("dm_transpose_perm_0213", "Transpose", [("x", F32, [2, 3, 4, 5])], {"perm": [0, 2, 1, 3]})
add("dm_transpose_default_reverse", "Transpose", [("x", F32, [3, 4, 5])])
add("dm_transpose_last_two_tiled", "Transpose", [("x", F32, [4, 67, 129])], {"perm": [0, 2, 1]})
add("dm_transpose_2d_large", "Transpose", [("x", F32, [513, 1031])], {"perm": [1, 0]})
add("dm_transpose_nhwc_to_nchw", "Transpose", [("x", F32, [2, 17, 19, 32])], {"perm": [0, 3, 1, 2]})
add("dm_transpose_nchw_to_nhwc_c3", "Transpose", [("x", F32, [2, 3, 16, 16])], {"perm": [0, 2, 3, 1]})
add("dm_transpose_nchw_to_nhwc_c64", "Transpose", [("x", F32, [2, 64, 9, 7])], {"perm": [0, 2, 3, 1]})
add("dm_transpose_rank1", "Transpose", [("x", F32, [1000])], {"perm": [0]})
add("dm_transpose_size1_dims", "Transpose", [("x", F32, [1, 7, 1, 13])], {"perm": [3, 2, 0, 1]})
add("dm_transpose_rank6", "Transpose", [("x", F32, [2, 3, 1, 4, 2, 5])],
    {"perm": [5, 1, 3, 0, 4, 2]})
add("dm_transpose_heads", "Transpose", [("x", F32, [2, 13, 4, 16])], {"perm": [0, 2, 1, 3]})
add("dm_transpose_f16_tiled", "Transpose", [("x", F16, [8, 33, 65])], {"perm": [0, 2, 1]})
add("dm_transpose_f16_0213", "Transpose", [("x", F16, [2, 5, 3, 8])], {"perm": [0, 2, 1, 3]})
add("dm_transpose_int64", "Transpose", [("x", I64, [5, 7])], {"perm": [1, 0]})
add("dm_transpose_int64_tiled", "Transpose", [("x", I64, [3, 40, 24])], {"perm": [2, 0, 1]})
add("dm_transpose_int32", "Transpose", [("x", I32, [6, 5, 4])], {"perm": [2, 1, 0]})
add("dm_transpose_uint8_tiled", "Transpose", [("x", "uint8", [48, 50])], {"perm": [1, 0]})
add("dm_transpose_bool", "Transpose", [("x", "bool", [3, 7, 2])], {"perm": [1, 2, 0]})

# ---- Concat --------------------------------------------------------------------------------------
add("dm_concat_axis1_three", "Concat",
    [("a", F32, [2, 3, 4]), ("b", F32, [2, 5, 4]), ("c", F32, [2, 1, 4])], {"axis": 1})
add("dm_concat_axis_neg1_odd", "Concat", [("a", F32, [3, 7]), ("b", F32, [3, 13])], {"axis": -1})
add("dm_concat_axis0", "Concat", [("a", F32, [1, 1000]), ("b", F32, [2, 1000])], {"axis": 0})
add("dm_concat_channels", "Concat", [("a", F32, [2, 16, 9, 9]), ("b", F32, [2, 32, 9, 9])],
    {"axis": 1})
add("dm_concat_single", "Concat", [("a", F32, [4, 5])], {"axis": 0})
add("dm_concat_f16_odd", "Concat", [("a", F16, [5, 3]), ("b", F16, [5, 5]), ("c", F16, [5, 1])],
    {"axis": 1})
add("dm_concat_int64", "Concat", [("a", I64, [2, 3]), ("b", I64, [4, 3])], {"axis": 0})
add("dm_concat_int32_neg2", "Concat", [("a", I32, [2, 3, 2]), ("b", I32, [2, 1, 2])], {"axis": -2})
add("dm_concat_uint8", "Concat", [("a", "uint8", [3, 5]), ("b", "uint8", [3, 6])], {"axis": 1})
add("dm_concat_40_inputs", "Concat", [(f"x{i}", F32, [2, 1 + i % 3, 3]) for i in range(40)],
    {"axis": 1})
add("dm_concat_with_const", "Concat", [("a", F32, [2, 3]), const("b", F32, [[1.0, 2.0, 3.0]])],
    {"axis": 0})

# ---- Split ---------------------------------------------------------------------------------------
add("dm_split_equal3_axis0", "Split", [("x", F32, [6, 4])], {"axis": 0, "num_outputs": 3},
    num_outputs=3)
add("dm_split_sizes_input", "Split", [("x", F32, [2, 7]), const("split", I64, [2, 5])],
    {"axis": 1}, num_outputs=2)
add("dm_split_num_outputs_uneven", "Split", [("x", F32, [2, 7])], {"axis": 1, "num_outputs": 3},
    num_outputs=3)
add("dm_split_neg_axis_channels", "Split", [("x", F32, [2, 48, 5, 5]), const("split", I64, [16, 32])],
    {"axis": -3}, num_outputs=2)
add("dm_split_zero_size_part", "Split", [("x", F32, [3, 6]), const("split", I64, [2, 0, 4])],
    {"axis": 1}, num_outputs=3)
add("dm_split_f16", "Split", [("x", F16, [4, 9])], {"axis": 1, "num_outputs": 3}, num_outputs=3)
add("dm_split_int64", "Split", [("x", I64, [4, 2]), const("split", I64, [1, 3])], {"axis": 0},
    num_outputs=2)
add("dm_split_35_outputs", "Split", [("x", F32, [35, 4])], {"axis": 0, "num_outputs": 35},
    num_outputs=35)

# ---- Slice ---------------------------------------------------------------------------------------
add("dm_slice_basic_axis1", "Slice",
    [("x", F32, [5, 6]), const("starts", I64, [1]), const("ends", I64, [4]),
     const("axes", I64, [1])])
add("dm_slice_no_axes", "Slice",
    [("x", F32, [5, 6, 7]), const("starts", I64, [1, 2]), const("ends", I64, [4, 5])])
add("dm_slice_neg_step_reverse", "Slice",
    [("x", F32, [5, 6]), const("starts", I64, [-1]), const("ends", I64, [-INT64_MAX]),
     const("axes", I64, [1]), const("steps", I64, [-1])])
add("dm_slice_neg_step2", "Slice",
    [("x", F32, [4, 13]), const("starts", I64, [11]), const("ends", I64, [0]),
     const("axes", I64, [-1]), const("steps", I64, [-2])])
add("dm_slice_step3_multi_axes", "Slice",
    [("x", F32, [7, 8, 9]), const("starts", I64, [0, 1]), const("ends", I64, [INT64_MAX, -1]),
     const("axes", I64, [2, 0]), const("steps", I64, [3, 2])])
add("dm_slice_contiguous_rows", "Slice",
    [("x", F32, [10, 1000]), const("starts", I64, [3]), const("ends", I64, [8]),
     const("axes", I64, [0])])
add("dm_slice_inner_window", "Slice",
    [("x", F32, [3, 64, 64]), const("starts", I64, [4, 8]), const("ends", I64, [60, 40]),
     const("axes", I64, [1, 2])])
add("dm_slice_single_element_axis", "Slice",
    [("x", F32, [4, 5, 6]), const("starts", I64, [2]), const("ends", I64, [3]),
     const("axes", I64, [1])])
add("dm_slice_clamped_ends", "Slice",
    [("x", F32, [6, 4]), const("starts", I64, [-100]), const("ends", I64, [100]),
     const("axes", I64, [0])])
add("dm_slice_int32_params", "Slice",
    [("x", F32, [6, 8]), const("starts", I32, [1, -3]), const("ends", I32, [5, 8]),
     const("axes", I32, [0, 1]), const("steps", I32, [2, 1])])
add("dm_slice_f16_neg_step", "Slice",
    [("x", F16, [3, 9, 5]), const("starts", I64, [8]), const("ends", I64, [1]),
     const("axes", I64, [1]), const("steps", I64, [-3])])
add("dm_slice_int64", "Slice",
    [("x", I64, [5, 6]), const("starts", I64, [1, 0]), const("ends", I64, [5, 6]),
     const("axes", I64, [0, 1]), const("steps", I64, [2, 2])])

# ---- Gather --------------------------------------------------------------------------------------
add("dm_gather_axis0_const", "Gather", [("x", F32, [4, 5]), const("idx", I64, [0, 2, -1])],
    {"axis": 0})
add("dm_gather_axis1_2d_indices", "Gather",
    [("x", F32, [3, 7, 4]), const("idx", I64, [[0, 6], [-7, 3]])], {"axis": 1})
add("dm_gather_scalar_index", "Gather", [("x", F32, [5, 6]), const("idx", I64, 2)], {"axis": 1})
add("dm_gather_last_axis_neg", "Gather", [("x", F32, [2, 3, 8]), const("idx", I64, [7, 0, -2])],
    {"axis": -1})
add("dm_gather_runtime_indices", "Gather", [("x", F32, [10, 6]), ("idx", I64, [3, 4])],
    {"axis": 0})
add("dm_gather_runtime_int32", "Gather", [("x", F32, [2, 11, 3]), ("idx", I32, [5])], {"axis": 1})
add("dm_gather_embedding", "Gather", [("x", F32, [1000, 64]), ("idx", I64, [2, 9])], {"axis": 0})
add("dm_gather_f16", "Gather", [("x", F16, [6, 10]), const("idx", I64, [1, 5, 0])], {"axis": 0})
add("dm_gather_int64_data", "Gather", [("x", I64, [4, 6]), const("idx", I32, [3, -4])],
    {"axis": 1})

# ---- GatherElements ------------------------------------------------------------------------------
add("dm_gather_elements_axis0", "GatherElements",
    [("x", F32, [3, 3]), const("idx", I64, [[1, 2, 0], [2, 0, -1]])], {"axis": 0})
add("dm_gather_elements_axis_neg1_runtime", "GatherElements",
    [("x", F32, [4, 8]), ("idx", I64, [4, 6])], {"axis": -1})
add("dm_gather_elements_smaller_indices", "GatherElements",
    [("x", F32, [5, 7, 3]), ("idx", I64, [3, 4, 2])], {"axis": 1})
add("dm_gather_elements_int32_indices", "GatherElements",
    [("x", F32, [6, 2]), ("idx", I32, [6, 2])], {"axis": 0})
add("dm_gather_elements_int64_data", "GatherElements",
    [("x", I64, [2, 7]), ("idx", I64, [2, 5])], {"axis": 1})
add("dm_gather_elements_f16", "GatherElements",
    [("x", F16, [7, 4]), ("idx", I64, [3, 4])], {"axis": 0})

# ---- Pad -----------------------------------------------------------------------------------------
add("dm_pad_constant_value", "Pad",
    [("x", F32, [3, 4]), const("pads", I64, [1, 2, 0, 1]), const("value", F32, 1.5)],
    {"mode": "constant"})
add("dm_pad_constant_default_zero", "Pad", [("x", F32, [3, 4]), const("pads", I64, [0, 1, 2, 3])])
add("dm_pad_constant_runtime_value", "Pad",
    [("x", F32, [2, 5]), const("pads", I64, [1, 1, 1, 1]), ("value", F32, [])],
    {"mode": "constant"})
add("dm_pad_reflect", "Pad", [("x", F32, [4, 5]), const("pads", I64, [2, 1, 1, 4])],
    {"mode": "reflect"})
add("dm_pad_edge", "Pad", [("x", F32, [3, 4]), const("pads", I64, [2, 3, 1, 2])], {"mode": "edge"})
add("dm_pad_wrap_large", "Pad", [("x", F32, [3, 5]), const("pads", I64, [0, 7, 4, 2])],
    {"mode": "wrap"})
add("dm_pad_negative_crop", "Pad", [("x", F32, [5, 6]), const("pads", I64, [-1, 1, 2, -2])])
add("dm_pad_axes_neg", "Pad",
    [("x", F32, [2, 3, 4]), const("pads", I64, [1, 2]), None, const("axes", I64, [-1])],
    {"mode": "constant"})
add("dm_pad_nchw_spatial_reflect", "Pad",
    [("x", F32, [2, 3, 9, 11]), const("pads", I64, [0, 0, 2, 3, 0, 0, 1, 2])], {"mode": "reflect"})
add("dm_pad_rank1_edge", "Pad", [("x", F32, [7]), const("pads", I64, [5, 6])], {"mode": "edge"})
add("dm_pad_int64_constant", "Pad",
    [("x", I64, [2, 3]), const("pads", I64, [1, 0, 0, 1]), const("value", I64, 42)])
add("dm_pad_f16_constant", "Pad",
    [("x", F16, [3, 3]), const("pads", I64, [1, 1, 1, 1]), const("value", F16, -0.5)])
add("dm_pad_f16_wrap", "Pad", [("x", F16, [4, 3]), const("pads", I64, [1, 2, 3, 1])],
    {"mode": "wrap"})

# ---- Tile ----------------------------------------------------------------------------------------
add("dm_tile_2x2", "Tile", [("x", F32, [2, 3]), const("repeats", I64, [2, 2])])
add("dm_tile_3d", "Tile", [("x", F32, [3, 1, 4]), const("repeats", I64, [1, 5, 2])])
add("dm_tile_ones", "Tile", [("x", F32, [3, 4]), const("repeats", I64, [1, 1])])
add("dm_tile_wide_inner", "Tile", [("x", F32, [4, 256]), const("repeats", I64, [3, 2])])
add("dm_tile_int64", "Tile", [("x", I64, [2, 2]), const("repeats", I64, [3, 1])])
add("dm_tile_f16_odd", "Tile", [("x", F16, [3, 5]), const("repeats", I64, [2, 3])])

# ---- Expand --------------------------------------------------------------------------------------
add("dm_expand_rank_up", "Expand", [("x", F32, [3, 1]), const("shape", I64, [2, 3, 4])])
add("dm_expand_scalar_like", "Expand", [("x", F32, [1]), const("shape", I64, [7, 13])])
add("dm_expand_shape_smaller", "Expand", [("x", F32, [2, 1, 6]), const("shape", I64, [5, 1])])
add("dm_expand_inner_contiguous", "Expand", [("x", F32, [1, 64]), const("shape", I64, [4, 3, 64])])
add("dm_expand_middle", "Expand", [("x", F32, [2, 1, 8]), const("shape", I64, [2, 9, 8])])
add("dm_expand_int64", "Expand", [("x", I64, [4]), const("shape", I64, [3, 1, 4])])
add("dm_expand_f16", "Expand", [("x", F16, [5, 1]), const("shape", I64, [5, 7])])
add("dm_expand_bool", "Expand", [("x", "bool", [1, 3]), const("shape", I64, [4, 3])])

# ---- Trilu ---------------------------------------------------------------------------------------
add("dm_trilu_upper_default", "Trilu", [("x", F32, [4, 5])])
add("dm_trilu_lower_batched", "Trilu", [("x", F32, [3, 6, 6])], {"upper": 0})
add("dm_trilu_upper_k1", "Trilu", [("x", F32, [5, 7]), const("k", I64, 1)])
add("dm_trilu_lower_kneg2", "Trilu", [("x", F32, [2, 7, 5]), const("k", I64, -2)], {"upper": 0})
add("dm_trilu_runtime_k", "Trilu", [("x", F32, [6, 6]), ("k", I64, [])])
add("dm_trilu_k_beyond", "Trilu", [("x", F32, [3, 4]), const("k", I64, 10)], {"upper": 0})
add("dm_trilu_int64", "Trilu", [("x", I64, [4, 4])], {"upper": 1})
add("dm_trilu_f16", "Trilu", [("x", F16, [2, 5, 3])], {"upper": 0})

# ---- ScatterND -----------------------------------------------------------------------------------
add("dm_scatter_nd_rows", "ScatterND",
    [("x", F32, [4, 4, 4]), const("idx", I64, [[0], [2]]), ("u", F32, [2, 4, 4])])
add("dm_scatter_nd_pairs", "ScatterND",
    [("x", F32, [4, 5]), const("idx", I64, [[1, 2], [3, -1], [0, 0]]), ("u", F32, [3])])
add("dm_scatter_nd_k2_slices", "ScatterND",
    [("x", F32, [3, 4, 6]), const("idx", I64, [[[2, 1]], [[0, -4]]]), ("u", F32, [2, 1, 6])])
add("dm_scatter_nd_add", "ScatterND",
    [("x", F32, [5, 3]), const("idx", I64, [[4], [1]]), ("u", F32, [2, 3])], {"reduction": "add"})
add("dm_scatter_nd_mul", "ScatterND",
    [("x", F32, [5, 3]), const("idx", I64, [[0], [3]]), ("u", F32, [2, 3])], {"reduction": "mul"})
add("dm_scatter_nd_max", "ScatterND",
    [("x", F32, [5, 3]), const("idx", I64, [[2], [1]]), ("u", F32, [2, 3])], {"reduction": "max"})
add("dm_scatter_nd_min_int64", "ScatterND",
    [("x", I64, [6]), const("idx", I64, [[5], [0]]), ("u", I64, [2])], {"reduction": "min"})
add("dm_scatter_nd_int64", "ScatterND",
    [("x", I64, [4, 3]), const("idx", I64, [[3], [0]]), ("u", I64, [2, 3])])
add("dm_scatter_nd_f16", "ScatterND",
    [("x", F16, [4, 3]), const("idx", I64, [[1], [2]]), ("u", F16, [2, 3])])

# ---- Reshape, Flatten, Squeeze, Unsqueeze --------------------------------------------------------
add("sh_reshape_infer_dim", "Reshape", [("x", F32, [2, 3, 4]), const("shape", I64, [4, -1])])
add("sh_reshape_copy_dim", "Reshape", [("x", F32, [2, 3, 4]), const("shape", I64, [0, 12])])
add("sh_reshape_int64", "Reshape", [("x", I64, [6]), const("shape", I64, [2, 3])])
add("sh_reshape_f16", "Reshape", [("x", F16, [4, 5]), const("shape", I64, [20])])
add("sh_flatten_axis2", "Flatten", [("x", F32, [2, 3, 4, 5])], {"axis": 2})
add("sh_flatten_axis_neg1", "Flatten", [("x", F32, [2, 3, 4])], {"axis": -1})
add("sh_flatten_axis0", "Flatten", [("x", I64, [3, 4])], {"axis": 0})
add("sh_squeeze_axes", "Squeeze", [("x", F32, [1, 3, 1, 5]), const("axes", I64, [0, -2])])
add("sh_squeeze_all", "Squeeze", [("x", F32, [1, 7, 1])])
add("sh_unsqueeze_axes", "Unsqueeze", [("x", F32, [3, 5]), const("axes", I64, [0, -1])])
add("sh_unsqueeze_f16", "Unsqueeze", [("x", F16, [4]), const("axes", I64, [1])])

# ---- Shape, Size (folded at build time for static shapes) ----------------------------------------
add("sh_shape_full", "Shape", [("x", F32, [2, 3, 4])])
add("sh_shape_start_end", "Shape", [("x", F32, [2, 3, 4, 5])], {"start": 1, "end": -1})
add("sh_size", "Size", [("x", F32, [3, 7])])

# ---- ConstantOfShape (outputs above the 16 MiB folding limit run on the device) ------------------
add("sh_constant_of_shape_default_big", "ConstantOfShape", [const("shape", I64, [1030, 4100])])
add("sh_constant_of_shape_float_big", "ConstantOfShape", [const("shape", I64, [4100, 1030])],
    {"value": value_tensor(TensorProto.FLOAT, 1.25)})
add("sh_constant_of_shape_int64_big", "ConstantOfShape", [const("shape", I64, [2100, 1001])],
    {"value": value_tensor(TensorProto.INT64, 7)})
add("sh_constant_of_shape_int32_big", "ConstantOfShape", [const("shape", I64, [4201, 1000])],
    {"value": value_tensor(TensorProto.INT32, -3)})
add("sh_constant_of_shape_f16_big", "ConstantOfShape", [const("shape", I64, [8, 1051, 1001])],
    {"value": value_tensor(TensorProto.FLOAT16, 0.5)})
add("sh_constant_of_shape_small", "ConstantOfShape", [const("shape", I64, [3, 4])],
    {"value": value_tensor(TensorProto.FLOAT, 2.0)})

# ---- Range (outputs above the folding limit run on the device) -----------------------------------
add("sh_range_float_big", "Range",
    [const("start", F32, -3.3), const("limit", F32, 3000001.0), const("delta", F32, 0.7)])
add("sh_range_int64_big", "Range",
    [const("start", I64, -7), const("limit", I64, 6600000), const("delta", I64, 3)])
add("sh_range_int32_big_negative_delta", "Range",
    [const("start", I32, 4300000), const("limit", I32, -4300000), const("delta", I32, -2)])
add("sh_range_double_big", "Range",
    [const("start", "float64", 0.25), const("limit", "float64", 2200000.0),
     const("delta", "float64", 1.0)])
add("sh_range_small", "Range", [const("start", F32, 1.0), const("limit", F32, 5.5),
                                const("delta", F32, 0.5)])

# ---- EyeLike -------------------------------------------------------------------------------------
add("sh_eye_like_square", "EyeLike", [("x", F32, [5, 5])])
add("sh_eye_like_k2", "EyeLike", [("x", F32, [5, 7])], {"k": 2})
add("sh_eye_like_k_neg3", "EyeLike", [("x", F32, [6, 4])], {"k": -3})
add("sh_eye_like_int64_dtype", "EyeLike", [("x", F32, [4, 4])], {"dtype": TensorProto.INT64})
add("sh_eye_like_f16", "EyeLike", [("x", F16, [13, 13])], {"k": 1})
add("sh_eye_like_from_int32", "EyeLike", [("x", I32, [3, 8])], {"k": 5})

# ---- Resize --------------------------------------------------------------------------------------
def resize(case_id, shape, attrs, scale_values=None, sizes=None, dtype=F32, opset=19):
    inputs = [("x", dtype, shape), None]
    if scale_values is not None:
        inputs.append(const("scales", F32, scale_values))
    else:
        inputs += [None, const("sizes", I64, sizes)]
    add(case_id, "Resize", inputs, attrs, opset)


resize("rs_nearest_default_x2", [1, 2, 3, 4], {"mode": "nearest"}, [1, 1, 2, 2])
resize("rs_nearest_asymmetric_floor", [2, 3, 5, 7],
       {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
       [1, 1, 2, 2])
resize("rs_nearest_align_corners_prefer_ceil", [1, 2, 4, 5],
       {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
        "nearest_mode": "round_prefer_ceil"}, sizes=[1, 2, 7, 9])
resize("rs_nearest_pytorch_half_pixel_ceil_down", [1, 3, 10, 10],
       {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel",
        "nearest_mode": "ceil"}, [1, 1, 0.6, 0.6])
resize("rs_nearest_half_pixel_symmetric", [1, 1, 5, 6],
       {"mode": "nearest", "coordinate_transformation_mode": "half_pixel_symmetric"},
       [1, 1, 1.5, 0.7])
resize("rs_nearest_fractional_scale", [1, 2, 7, 9], {"mode": "nearest"}, [1, 1, 1.37, 2.21])
resize("rs_nearest_int_sizes_3d", [2, 5, 6], {"mode": "nearest"}, sizes=[2, 11, 3])
resize("rs_linear_half_pixel_x2", [2, 3, 5, 7], {"mode": "linear"}, [1, 1, 2, 2])
resize("rs_linear_align_corners", [2, 3, 5, 7],
       {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, sizes=[2, 3, 9, 13])
resize("rs_linear_align_corners_scales_down", [1, 2, 4, 7],
       {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 0.6, 0.6])
resize("rs_linear_asymmetric", [1, 2, 6, 8],
       {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 1.7, 0.5])
resize("rs_linear_pytorch_half_pixel_out1", [1, 2, 4, 6],
       {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
       sizes=[1, 2, 1, 5])
resize("rs_linear_half_pixel_symmetric", [1, 2, 5, 6],
       {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
       [1, 1, 2.5, 0.6])
resize("rs_linear_axes_not_larger", [1, 3, 6, 10],
       {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, sizes=[8, 8])
resize("rs_linear_axes_not_smaller", [1, 3, 6, 10],
       {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"},
       sizes=[8, 8])
resize("rs_nearest_axes_scales", [2, 4, 6], {"mode": "nearest", "axes": [1]}, [1.5])
resize("rs_linear_trilinear", [1, 2, 4, 5, 6], {"mode": "linear"}, [1, 1, 2, 1.5, 0.5])
resize("rs_linear_last_axis_only", [3, 4, 7], {"mode": "linear", "axes": [-1]}, [2.3])
resize("rs_linear_first_axis_only", [5, 4, 3], {"mode": "linear", "axes": [0]}, sizes=[9])
resize("rs_linear_downsample", [1, 1, 13, 17], {"mode": "linear"}, sizes=[1, 1, 5, 6])
resize("rs_linear_exclude_outside_extrapolation", [1, 2, 4, 4],
       {"mode": "linear", "exclude_outside": 1, "extrapolation_value": 3.0}, [1, 1, 1.5, 1.5])
resize("rs_linear_large_x2", [1, 16, 64, 64], {"mode": "linear"}, [1, 1, 2, 2])
resize("rs_nearest_large_x2", [2, 32, 40, 40], {"mode": "nearest"}, [1, 1, 2, 2])
resize("rs_linear_f16", [1, 3, 6, 7], {"mode": "linear"}, [1, 1, 1.5, 2], dtype=F16)
resize("rs_nearest_f16", [1, 3, 6, 7], {"mode": "nearest"}, sizes=[1, 3, 11, 4], dtype=F16)
resize("rs_linear_opset18_scales", [1, 2, 3, 4], {"mode": "linear"}, [1, 1, 3, 3], opset=18)

# ---- GatherND ------------------------------------------------------------------------------------
# Runtime indices address axes of size >= 6 (random values in [-5, 5] are in range; negatives wrap).
add("dm_gather_nd_rows_runtime", "GatherND", [("x", F32, [8, 13]), ("idx", I64, [5, 1])])
add("dm_gather_nd_scalars_const", "GatherND",
    [("x", F32, [5, 4]), const("idx", I64, [[0, 1], [4, -4], [-5, 3]])])
add("dm_gather_nd_2d_tuples_runtime", "GatherND", [("x", F32, [6, 7, 9]), ("idx", I64, [2, 3, 2])])
add("dm_gather_nd_full_tuple_runtime", "GatherND", [("x", F32, [6, 6, 7]), ("idx", I64, [4, 3])])
add("dm_gather_nd_bert_batch1", "GatherND", [("x", F32, [2, 128, 768]), ("idx", I64, [2, 20, 1])],
    {"batch_dims": 1})
add("dm_gather_nd_batch1_full_tuple", "GatherND",
    [("x", F32, [3, 4, 5]), const("idx", I64, [[1, 4], [0, 0], [3, -1]])], {"batch_dims": 1})
add("dm_gather_nd_batch2", "GatherND", [("x", F32, [2, 3, 7, 13]), ("idx", I64, [2, 3, 4, 1])],
    {"batch_dims": 2})
add("dm_gather_nd_large_slices", "GatherND", [("x", F32, [6, 1000]), ("idx", I64, [1001, 1])])
add("dm_gather_nd_odd_slice_f16", "GatherND", [("x", F16, [7, 3, 7]), ("idx", I64, [4, 1])])
add("dm_gather_nd_f16_scalars", "GatherND", [("x", F16, [6, 7]), ("idx", I64, [13, 2])])
add("dm_gather_nd_int64_data", "GatherND", [("x", I64, [6, 7, 2]), ("idx", I64, [3, 2])])
add("dm_gather_nd_int32_data_batch1", "GatherND", [("x", I32, [3, 6, 5]), ("idx", I64, [3, 1])],
    {"batch_dims": 1})
add("dm_gather_nd_opset13", "GatherND", [("x", F32, [6, 4]), const("idx", I64, [[2], [5]])],
    opset=13)
