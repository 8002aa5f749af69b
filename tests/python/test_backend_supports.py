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


def test_the_verdict_is_conclusive_only_when_every_node_has_a_registered_kernel():
    from kiln._partition_lowering import kernel_registrations_verdict

    verdict = kernel_registrations_verdict(_one_node_model("Relu", TensorProto.FLOAT), "cpu")
    assert verdict.refusal is None and verdict.conclusive
    for op, backend in (("NoSuchOp", "cpu"), ("Relu", "nosuch")):
        verdict = kernel_registrations_verdict(_one_node_model(op, TensorProto.FLOAT), backend)
        assert verdict.refusal is None and not verdict.conclusive


class _CountingBuilds:
    """Stands in for the partitioner's build_engine: counts the builds and refuses every model
    that holds an op of ``refused_op`` (as a kernel would on an attribute the registrations do
    not see)."""

    def __init__(self, real, refused_op=None):
        self.real, self.refused_op, self.calls = real, refused_op, 0

    def __call__(self, lowered, **kwargs):
        self.calls += 1
        if self.refused_op and any(n.op_type == self.refused_op
                                   for n in onnx.load_from_string(lowered.onnx_bytes).graph.node):
            raise kiln.UnsupportedError(f"test refuses {self.refused_op}")
        return self.real(lowered, **kwargs)


def _atan_module():
    import torch

    class AtanBetweenRelus(torch.nn.Module):
        def forward(self, x):
            return torch.relu(torch.atan(torch.relu(x) * 2.0) + 1.0)

    return AtanBetweenRelus().eval(), (torch.randn(2, 8),)


def test_a_probe_that_the_registrations_answer_builds_nothing(monkeypatch):
    import torch

    import kiln._compile as compile_module
    import kiln._partition_lowering as lowering

    module, inputs = _atan_module()
    exported = torch.export.export(module, inputs).run_decompositions().module()
    atan = next(n for n in exported.graph.nodes if "atan" in str(n.target))
    builds = _CountingBuilds(lowering.build_engine)
    monkeypatch.setattr(lowering, "build_engine", builds)
    monkeypatch.setattr(compile_module, "build_engine", builds)
    monkeypatch.setattr(lowering, "_PROBE_CACHE", {})
    assert lowering.probe_node(exported, atan, "cpu") is None
    assert builds.calls == 0
    # The partitioner's second look builds, and the cached registrations' answer does not stop it.
    assert lowering.probe_node(exported, atan, "cpu", trial_build=True) is None
    assert builds.calls == 1


def test_a_node_the_registrations_take_but_the_build_refuses_falls_back_alone(monkeypatch):
    import torch

    import kiln._compile as compile_module
    import kiln._partition_lowering as lowering

    module, inputs = _atan_module()
    builds = _CountingBuilds(lowering.build_engine, refused_op="Atan")
    monkeypatch.setattr(lowering, "build_engine", builds)
    monkeypatch.setattr(compile_module, "build_engine", builds)
    monkeypatch.setattr(lowering, "_PROBE_CACHE", {})
    compiled = kiln.compile(module, inputs, min_block_size=1, report=True)
    report = compiled.kiln_report
    assert [f.op for f in report.fallbacks] == ["aten.atan.default"], report
    assert "test refuses Atan" in report.fallbacks[0].reason
    assert report.engines, report
    torch.testing.assert_close(compiled(*inputs), module(*inputs))


def test_the_cuda_elementwise_registrations_claim_only_what_their_kernels_run():
    # The first GPU run of the backend-ops conformance test found claims the kernels refused at run
    # time (float64/int8/uint8 arithmetic, bool ReduceMax); and a CUDA Dropout copied its input
    # whatever a run-time training_mode said.
    if not cuda_backend_present():
        pytest.skip("this kiln has no CUDA backend")
    assert kiln.supports("Add", ["float16", "float16"], backend="cuda") is None
    assert kiln.supports("Add", ["int64", "int64"], backend="cuda") is None
    for dtype in ("float64", "int8", "uint8"):
        reason = kiln.supports("Add", [dtype, dtype], backend="cuda")
        assert reason is not None and f"is {dtype}; the cuda kernel takes" in reason, reason
    assert kiln.supports("ReduceMax", ["bool"], backend="cuda") is not None
    assert kiln.supports("Identity", ["float64"], backend="cuda") is None  # a copy of any dtype
    assert kiln.supports("Relu", ["int8"], backend="cuda") is not None
    assert kiln.supports("Dropout", ["float32"], backend="cuda") is None
    reason = kiln.supports("Dropout", ["float32", "float32", "bool"], backend="cuda")
    assert reason is not None and "training_mode is an input read at run time" in reason, reason
