"""Conformance cases (CUDA vs CPU backend, and CPU vs ONNX Runtime in
tests/python/test_einsum_ops.py) for Einsum. kiln has no Einsum kernel: the builder lowers every
Einsum to Transpose/Reshape/MatMul/ReduceSum (src/passes/einsum_lowering.cpp), so these cases check
that lowering on every backend.

Each entry: (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is
(name, dtype, shape) for a random runtime input (floats uniform in [-2, 2]).

The equations cover matrix products with and without batch dims, attention scores and values,
ellipses (equal rank, different rank, size-1 broadcast), transposes and reductions of one operand,
outer products, contractions with a label summed away in one operand, and implicit outputs.
"""

F32, F16 = "float32", "float16"

CASES = []


def add(case_id, equation, *shapes, dtype=F32):
    inputs = [(f"x{i}", dtype, list(shape)) for i, shape in enumerate(shapes)]
    CASES.append((case_id, "Einsum", inputs, {"equation": equation}, 17))


add("einsum_matmul", "ij,jk->ik", (3, 4), (4, 5))
add("einsum_batched_matmul", "bij,bjk->bik", (2, 3, 4), (2, 4, 5))
add("einsum_attention_scores", "bhqd,bhkd->bhqk", (2, 3, 4, 8), (2, 3, 6, 8))
add("einsum_attention_values", "bhqk,bhkd->bhqd", (2, 3, 4, 6), (2, 3, 6, 8))
add("einsum_ellipsis_matmul", "...ij,...jk->...ik", (2, 3, 4, 5), (2, 3, 5, 6))
add("einsum_ellipsis_ranks_differ", "...ij,jk->...ik", (2, 3, 4, 5), (5, 6))
add("einsum_ellipsis_broadcast", "...ij,...jk->...ik", (2, 1, 3, 4), (1, 5, 4, 6))
add("einsum_transpose", "ij->ji", (3, 4))
add("einsum_identity", "ij->ij", (3, 4))
add("einsum_row_sum", "ij->i", (3, 4))
add("einsum_total_sum", "ij->", (3, 4))
add("einsum_sum_and_transpose", "abc->ca", (2, 3, 4))
add("einsum_outer", "i,j->ij", (3,), (4,))
add("einsum_projection", "bid,jd->bij", (2, 3, 4), (5, 4))
add("einsum_rowwise_dot", "ij,ij->i", (3, 4), (3, 4))
add("einsum_dot", "i,i->", (7,), (7,))
add("einsum_matvec", "ij,j->i", (3, 4), (4,))
add("einsum_summed_alone", "ij,jk->k", (3, 4), (4, 5))
add("einsum_implicit_matmul", "ij,jk", (3, 4), (4, 5))
add("einsum_implicit_transposed", "ba,ca", (3, 4), (5, 4))
add("einsum_outer_permuted", "ij,kl->ljik", (2, 3), (4, 5))
add("einsum_large_bmm", "bmk,bkn->bnm", (4, 96, 80), (4, 80, 72))
add("einsum_attention_scores_f16", "bhqd,bhkd->bhqk", (2, 2, 16, 32), (2, 2, 24, 32), dtype=F16)
