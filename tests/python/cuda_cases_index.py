"""Conformance cases (CUDA vs CPU backend) for the index family: CumSum, ArgMax, ArgMin, TopK
(src/backends/cuda/index_kernels.cu). tests/python/test_index_ops.py runs the same tuples on the
CPU backend against ONNX Runtime.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2], integers in [-5, 5]),
or (name, dtype, values, "const") for an initializer.

Notes for readers:
- CumSum's axis and TopK's K are constants (value inputs); the data are runtime inputs, so
  nothing folds at build time.
- The shapes pick each kernel path: CumSum contiguous lines up to 256 long (a warp per line),
  longer ones (a block, several 2048-element chunks, 16-byte packs when the length is a multiple
  of 8), and strided lines (axis not last); ArgMax/ArgMin warp rows, block rows (> 1024),
  strided lines with a thread each, and few strided lines over long axes (a block per tile);
  TopK thread lines (<= 64 long), block lines with K <= 2048 (shared memory), K > 2048 (global
  workspace), vocabulary-sized rows (512 threads), and integer data with many ties at the
  threshold (random integers in [-5, 5]).
"""

F32, F16, I64, I32 = "float32", "float16", "int64", "int32"


def const(name, dtype, values):
    return (name, dtype, values, "const")


def axis(value, dtype=I64):
    return const("axis", dtype, value)


def k(value):
    return const("k", I64, [value])


CASES = []


def add(case_id, op, inputs, attrs=None, opset=18, num_outputs=None):
    entry = (case_id, op, inputs, attrs or {}, opset)
    CASES.append(entry + ((num_outputs,) if num_outputs else ()))


# ---- CumSum ----------------------------------------------------------------------------------
add("idx_cumsum_last_axis", "CumSum", [("x", F32, [4, 37]), axis(-1)])
add("idx_cumsum_short_lines_warp", "CumSum", [("x", F32, [100, 8]), axis(1)])
add("idx_cumsum_warp_full_chunk_exclusive", "CumSum", [("x", F32, [50, 256]), axis(1)],
    {"exclusive": 1})
add("idx_cumsum_block_reverse_exclusive", "CumSum", [("x", F32, [3, 1000]), axis(1)],
    {"exclusive": 1, "reverse": 1})
add("idx_cumsum_long_lines_packed", "CumSum", [("x", F32, [4, 4096]), axis(1)])
add("idx_cumsum_long_lines_packed_reverse", "CumSum", [("x", F32, [2, 4104]), axis(-1)],
    {"reverse": 1})
add("idx_cumsum_long_odd_line", "CumSum", [("x", F32, [5001]), axis(0)])
add("idx_cumsum_axis0_strided", "CumSum", [("x", F32, [300, 3, 5]), axis(0)])
add("idx_cumsum_middle_reverse", "CumSum", [("x", F32, [2, 700, 3]), axis(1)], {"reverse": 1})
add("idx_cumsum_middle_wide_exclusive", "CumSum", [("x", F32, [3, 40, 100]), axis(-2)],
    {"exclusive": 1})
add("idx_cumsum_axis_int32", "CumSum", [("x", F32, [6, 13]), axis(0, I32)])
add("idx_cumsum_length_one", "CumSum", [("x", F32, [7, 1]), axis(1)])
add("idx_cumsum_int32", "CumSum", [("x", I32, [5, 300]), axis(-1)])
add("idx_cumsum_int64_strided", "CumSum", [("x", I64, [3, 257, 4]), axis(1)],
    {"exclusive": 1, "reverse": 1})
add("idx_cumsum_int64_rows", "CumSum", [("x", I64, [9, 3000]), axis(1)])
add("idx_cumsum_f16", "CumSum", [("x", F16, [4, 129]), axis(1)])
add("idx_cumsum_f16_strided", "CumSum", [("x", F16, [64, 3, 2]), axis(0)], {"reverse": 1})

# ---- ArgMax / ArgMin -------------------------------------------------------------------------
add("idx_argmax_rows_warp", "ArgMax", [("x", F32, [7, 1000])], {"axis": 1})
add("idx_argmax_rows_block", "ArgMax", [("x", F32, [3, 20000])], {"axis": -1, "keepdims": 0})
add("idx_argmax_strided", "ArgMax", [("x", F32, [4, 50, 6])], {"axis": 1})
add("idx_argmax_axis0_default", "ArgMax", [("x", F32, [33, 17])])
add("idx_argmax_int32_ties_last", "ArgMax", [("x", I32, [20, 30])],
    {"axis": 1, "select_last_index": 1})
add("idx_argmax_int64_ties_axis0", "ArgMax", [("x", I64, [6, 9, 4])], {"axis": 0, "keepdims": 0})
add("idx_argmax_int32_ties_block", "ArgMax", [("x", I32, [2, 5000])], {"axis": 1})
add("idx_argmax_f16", "ArgMax", [("x", F16, [8, 300])], {"axis": 1})
add("idx_argmin_rows", "ArgMin", [("x", F32, [64, 2048])], {"axis": 1})
add("idx_argmin_int64_ties_last_block", "ArgMin", [("x", I64, [3, 3000])],
    {"axis": 1, "select_last_index": 1})
add("idx_argmin_strided_last", "ArgMin", [("x", I32, [5, 40, 3])],
    {"axis": -2, "select_last_index": 1, "keepdims": 0})
add("idx_argmin_rank1", "ArgMin", [("x", F32, [999])], {"keepdims": 0})
add("idx_argmax_columns_long_axis", "ArgMax", [("x", F32, [2, 3000, 5])], {"axis": 1})
add("idx_argmin_columns_int64_ties_last", "ArgMin", [("x", I64, [3, 500, 40])],
    {"axis": 1, "select_last_index": 1})

# ---- TopK ------------------------------------------------------------------------------------
add("idx_topk_vocab_k5", "TopK", [("x", F32, [3, 50257]), k(5)], num_outputs=2)
add("idx_topk_vocab_k50_smallest", "TopK", [("x", F32, [2, 50257]), k(50)], {"largest": 0},
    num_outputs=2)
add("idx_topk_full_row", "TopK", [("x", F32, [4, 1000]), k(1000)], num_outputs=2)
add("idx_topk_large_k_workspace", "TopK", [("x", F32, [2, 5000]), k(3000)], num_outputs=2)
add("idx_topk_short_rows_thread", "TopK", [("x", F32, [6, 20]), k(5)], num_outputs=2)
add("idx_topk_axis0_thread_strided", "TopK", [("x", F32, [30, 4, 3]), k(7)], {"axis": 0},
    num_outputs=2)
add("idx_topk_axis0_block_strided", "TopK", [("x", F32, [100, 5]), k(10)],
    {"axis": 0, "largest": 0}, num_outputs=2)
add("idx_topk_int32_ties", "TopK", [("x", I32, [8, 500]), k(20)], num_outputs=2)
add("idx_topk_int32_ties_smallest", "TopK", [("x", I32, [8, 500]), k(20)], {"largest": 0},
    num_outputs=2)
add("idx_topk_int64_all_ties", "TopK", [("x", I64, [4, 100]), k(100)], num_outputs=2)
add("idx_topk_int64_ties_workspace", "TopK", [("x", I64, [2, 3000]), k(2500)], {"largest": 0},
    num_outputs=2)
add("idx_topk_f16", "TopK", [("x", F16, [4, 4096]), k(16)], num_outputs=2)
add("idx_topk_k0", "TopK", [("x", F32, [3, 10]), k(0)], num_outputs=2)
add("idx_topk_unsorted", "TopK", [("x", F32, [5, 300]), k(9)], {"sorted": 0}, num_outputs=2)
add("idx_topk_k1_long", "TopK", [("x", F32, [1, 200000]), k(1)], num_outputs=2)
