"""QuantizeLinear / DequantizeLinear conformance tuples (cuda_cases_quantize.py) on the CPU backend
against the ONNX reference evaluator, bit for bit (the GPU machine runs the same tuples CUDA
against CPU), and what the CUDA kernels' registrations take (src/backends/cuda/quantize_kernels.cu):
int8/uint8/int16 codes with float32/float16/bfloat16 values, so a Q/DQ model's layers are CUDA
layers, while float8 codes, int32 inputs and the `precision` attribute stay on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln
from cuda_cases_quantize import CASES
from kiln_testing import case_from_tuple, cuda_backend_present, run_kiln

TUPLE_CASES = [case_from_tuple(entry) for entry in CASES]


@pytest.mark.parametrize("case", TUPLE_CASES, ids=[c.id for c in TUPLE_CASES])
def test_cpu_matches_the_onnx_reference_bit_for_bit(case):
    model = case.model()
    got = run_kiln(model, case.feeds)
    want = ReferenceEvaluator(model).run(None, case.feeds)
    (name,) = got
    assert got[name].dtype == want[0].dtype and got[name].shape == want[0].shape
    if case.id == "qdq_q_ties":  # NaN: ONNX leaves it undefined; kiln gives the zero point
        got_values, want_values = got[name][:-1], want[0][:-1]
        assert got[name][-1] == 0
    else:
        got_values, want_values = got[name], want[0]
    np.testing.assert_array_equal(got_values, want_values)


needs_cuda = pytest.mark.skipif(not cuda_backend_present(), reason="this kiln has no CUDA backend")


@needs_cuda
@pytest.mark.parametrize("inputs,outputs", [
    (["float32", "float32", "int8"], ["int8"]),
    (["float16", "float16", "uint8"], ["uint8"]),
    (["bfloat16", "float32", None], ["uint8"]),
    (["float32", "float32", "int16"], ["int16"]),
])
def test_cuda_quantize_takes_integer_codes(inputs, outputs):
    assert kiln.supports("QuantizeLinear", inputs, "cuda", outputs) is None


@needs_cuda
def test_cuda_refuses_what_its_kernels_do_not_compute():
    assert kiln.supports("QuantizeLinear", ["float32", "float32", "float8e4m3fn"], "cuda", ["float8e4m3fn"])
    assert kiln.supports("QuantizeLinear", ["int32", "float32", "int8"], "cuda", ["int8"])
    assert kiln.supports("DequantizeLinear", ["int32", "float32", "int32"], "cuda", ["float32"])
    assert kiln.supports("DequantizeLinear", ["int8", "float32", "int8"], "cuda", ["float32"]) is None


def _qdq_model(precision: int | None = None) -> bytes:
    attrs = {"precision": precision} if precision else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quantize", **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequantize")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
                              [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                               numpy_helper.from_array(np.array(3, np.int8), "z")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]).SerializeToString()


@needs_cuda
def test_a_qdq_model_builds_for_cuda_without_host_layers():
    kiln.build_onnx(_qdq_model(), target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)


@needs_cuda
def test_the_precision_attribute_keeps_quantize_off_the_cuda_kernel():
    with pytest.raises(kiln.KilnError, match=r"quantize.*precision"):
        kiln.build_onnx(_qdq_model(precision=TensorProto.FLOAT), target="cuda", cuda_arch=90, kernel_cache="off",
                        allow_host_layers=False)
