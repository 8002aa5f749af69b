"""Host layers of CUDA engines: a layer no CUDA kernel takes (an op, a dtype, an attribute choice)
runs on the host with the CPU kernel, its data copied between the GPU and host memory. Every
result is checked against a CPU engine of the same model, on host tensors and on device buffers
on the caller's stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import kiln


def make_model(nodes, inputs, outputs, initializers=(), opset=26) -> bytes:
    graph = helper.make_graph(nodes, "host_layers", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 11
    return model.SerializeToString()


def cumprod_between_gpu_layers() -> bytes:
    # Relu (GPU) -> CumProd (host: no CUDA kernel) -> Mul by a weight (GPU).
    axis = numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")
    scale = numpy_helper.from_array(np.linspace(0.5, 1.5, 6).astype(np.float32), "scale")
    return make_model([helper.make_node("Relu", ["x"], ["r"]),
                       helper.make_node("CumProd", ["r", "axis"], ["c"], name="running_product"),
                       helper.make_node("Mul", ["c", "scale"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], [axis, scale])


def nonzero_then_cast() -> bytes:
    # NonZero (host, data-dependent size) -> Cast (GPU) over its result.
    return make_model([helper.make_node("NonZero", ["x"], ["i"], name="where_nonzero"),
                       helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, None])], opset=18)


def uint32_add() -> bytes:
    return make_model([helper.make_node("Add", ["a", "b"], ["y"], name="unsigned_add")],
                      [helper.make_tensor_value_info("a", TensorProto.UINT32, [5]),
                       helper.make_tensor_value_info("b", TensorProto.UINT32, [5])],
                      [helper.make_tensor_value_info("y", TensorProto.UINT32, [5])], opset=18)


def engines(model: bytes, **kwargs):
    return (kiln.Engine(kiln.build_onnx(model, target="cpu", **kwargs)),
            kiln.Engine(kiln.build_onnx(model, target="cuda", **kwargs)))


def host_layers_of(engine: kiln.Engine) -> list:
    return engine.metadata["kiln_build"].get("host_layers", [])


def test_a_host_layer_between_gpu_layers_matches_the_cpu_engine():
    profiles = {"x": [(1, 6), (4, 6), (8, 6)]}
    cpu, cuda = engines(cumprod_between_gpu_layers(), profiles=profiles)
    assert [h.split(":")[0] for h in host_layers_of(cuda)] == ["layer 'running_product' (op 'CumProd')"]
    rng = np.random.default_rng(0)
    for batch in (4, 1, 8, 4):
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        np.testing.assert_allclose(cuda.run({"x": x})["y"], cpu.run({"x": x})["y"], rtol=1e-5, atol=1e-6)


def test_a_host_layer_in_an_fp16_engine_matches_the_cpu_engine():
    cpu, cuda = engines(cumprod_between_gpu_layers(), precision="fp16", profiles={"x": [(2, 6), (2, 6), (2, 6)]})
    x = np.random.default_rng(1).uniform(0.5, 1.5, (2, 6)).astype(np.float32)
    np.testing.assert_allclose(cuda.run({"x": x})["y"], cpu.run({"x": x})["y"], rtol=2e-2, atol=1e-2)


def test_a_host_layer_on_device_buffers_waits_for_the_callers_stream():
    cpu, cuda = engines(cumprod_between_gpu_layers(), profiles={"x": [(1, 6), (4, 6), (8, 6)]})
    stream = torch.cuda.Stream()
    x_host = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    with torch.cuda.stream(stream):
        x = torch.empty(4, 6, device="cuda")
        x.copy_(torch.from_numpy(x_host), non_blocking=True)  # queued on the stream before the call
        y = torch.empty(4, 6, device="cuda")
        cuda.run_bound({"x": (x.data_ptr(), (4, 6), np.float32)}, {"y": (y.data_ptr(), (4, 6), np.float32)},
                       stream=stream.cuda_stream)
    stream.synchronize()
    np.testing.assert_allclose(y.cpu().numpy(), cpu.run({"x": x_host})["y"], rtol=1e-5, atol=1e-6)


def test_a_data_dependent_host_layer_feeds_a_gpu_layer():
    cpu, cuda = engines(nonzero_then_cast())
    for seed in range(3):
        x = (np.random.default_rng(seed).random((3, 4)) > 0.5).astype(np.float32)
        got, want = cuda.run({"x": x})["y"], cpu.run({"x": x})["y"]
        assert got.shape == want.shape == (2, int(np.count_nonzero(x)))
        np.testing.assert_array_equal(got, want)


def test_a_dtype_no_cuda_kernel_takes_runs_on_the_host():
    cpu, cuda = engines(uint32_add())
    assert host_layers_of(cuda) and "uint32" in host_layers_of(cuda)[0]
    a = np.array([1, 2, 4_000_000_000, 7, 0], np.uint32)
    b = np.array([3, 5, 1, 2**32 - 8, 9], np.uint32)
    np.testing.assert_array_equal(cuda.run({"a": a, "b": b})["y"], cpu.run({"a": a, "b": b})["y"])


def test_allow_host_layers_false_refuses_the_gpu_build():
    with pytest.raises(kiln.UnsupportedError, match=r"layer 'running_product' \(op 'CumProd'\)"):
        kiln.build_onnx(cumprod_between_gpu_layers(), target="cuda", allow_host_layers=False)
