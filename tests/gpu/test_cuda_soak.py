"""Soak on the GPU: loading, running and closing CUDA engines over and over must grow neither the
device's used memory nor the process's resident set. Each cycle loads one engine (about 8 MB of
fp16 weights, generated kernels, cuDNN and cuBLAS work) from bytes, runs it from host arrays and
through device buffers, and closes it. A leaked engine, context, arena or module per cycle would
grow device memory by at least its weights, 200 x 8 MB; the bounds allow the allocators' noise.
Bounded to well under a minute (tests/python/test_soak.py is the CPU twin)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import load_run_and_check, rss_bytes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _device_used_bytes() -> int:
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return total - free


def _model() -> bytes:
    # A conv, a generated kernel (bias + SiLU + mean) and a 2048 x 2048 GEMM: every kind of state
    # an engine holds on the device.
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 16, 3, 3)).astype(np.float32) * 0.1, "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 2048)).astype(np.float32) * 0.05, "w2")
    w3 = numpy_helper.from_array(rng.standard_normal((2048, 2048)).astype(np.float32) * 0.02, "w3")
    axes = numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["g"]), helper.make_node("Mul", ["c", "g"], ["s"]),
             helper.make_node("ReduceMean", ["s", "axes"], ["m"], keepdims=0),
             helper.make_node("MatMul", ["m", "w2"], ["h"]), helper.make_node("MatMul", ["h", "w3"], ["y"])]
    graph = helper.make_graph(nodes, "soak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16, 24, 24])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, b1, w2, w3, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_cuda_load_run_close_cycles_grow_neither_device_nor_host_memory():
    engine_bytes = kiln.build_onnx(_model(), target="cuda", precision="fp16")
    assert len(engine_bytes) > 8_000_000  # the weights travel in every load
    x = np.random.default_rng(1).standard_normal((8, 16, 24, 24)).astype(np.float32)
    x_device = torch.from_numpy(x).cuda()
    first = {}

    def cycle():
        engine, got = load_run_and_check(engine_bytes, {"x": x}, first)
        out = engine.outputs[0]
        y_device = torch.empty(tuple(got.shape), dtype=torch.float32, device="cuda")
        engine.run_bound({"x": (x_device.data_ptr(), tuple(x.shape), np.dtype(np.float32))},
                         {out.name: (y_device.data_ptr(), tuple(got.shape), np.dtype(np.float32))},
                         stream=torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        np.testing.assert_array_equal(y_device.cpu().numpy(), first["y"])
        engine.close()

    for _ in range(20):  # warm-up: library handles, allocator pools, lazily loaded modules
        cycle()
    device_before, host_before = _device_used_bytes(), rss_bytes()
    for _ in range(200):
        cycle()
    device_grown = _device_used_bytes() - device_before
    host_grown = rss_bytes() - host_before
    assert device_grown < 64 * 2**20, f"device memory grew by {device_grown / 2**20:.1f} MB over 200 cycles"
    assert host_grown < 64 * 2**20, f"resident set grew by {host_grown / 2**20:.1f} MB over 200 cycles"
