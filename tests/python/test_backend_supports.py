"""kiln.supports: a backend's kernel registrations answered without building (the partitioner's
probes ask it before their trial build)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kiln
from kiln._partition_lowering import refused_by_kernel_registrations
from kiln_testing import cuda_backend_present


def _one_node_model(op: str, dtype: int) -> bytes:
    x = helper.make_tensor_value_info("x", dtype, [2, 3])
    y = helper.make_tensor_value_info("y", dtype, [2, 3])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], name="the_node")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def test_the_cpu_backend_takes_its_ops_and_names_an_op_it_lacks():
    assert kiln.supports("Relu", ["float32"]) is None
    assert kiln.supports("Softmax", [np.float64], backend="cpu") is None
    assert kiln.supports("NoSuchOp", ["float32"]) == "the cpu backend has no kernel for op 'NoSuchOp'"


def test_a_dtype_that_is_no_kiln_dtype_and_an_absent_backend_are_errors():
    with pytest.raises(kiln.InvalidArgumentError):
        kiln.supports("Relu", [200])
    with pytest.raises(kiln.NotFoundError, match="no backend 'nosuch'"):
        kiln.supports("Relu", ["float32"], backend="nosuch")


def test_the_cuda_registrations_refuse_float64_softmax_naming_what_they_take():
    if not cuda_backend_present():
        pytest.skip("this kiln has no CUDA backend")
    assert kiln.supports("Softmax", ["float16"], backend="cuda") is None
    assert (kiln.supports("Softmax", ["float64"], backend="cuda")
            == "input 0 'input0' is float64; the cuda kernel takes float32, float16, bfloat16")
    reason = refused_by_kernel_registrations(_one_node_model("Softmax", TensorProto.DOUBLE), "cuda")
    assert reason is not None and "node 'the_node' (Softmax) on cuda" in reason


def test_the_probe_precheck_leaves_what_the_registrations_take_to_the_build():
    assert refused_by_kernel_registrations(_one_node_model("Relu", TensorProto.FLOAT), "cpu") is None
    # An op without a kernel of its name may be rewritten by the importer: the build decides.
    assert refused_by_kernel_registrations(_one_node_model("NoSuchOp", TensorProto.FLOAT), "cpu") is None
    # A backend this runtime lacks: the build decides (and says so).
    assert refused_by_kernel_registrations(_one_node_model("Relu", TensorProto.FLOAT), "nosuch") is None
