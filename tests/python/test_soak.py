"""Soak: loading, running and closing engines over and over must not grow the process's memory.

Each cycle builds nothing: it loads one engine (about 0.6 MB of weights) from bytes, runs it and
closes it. After a warm-up (the
allocators settle), the resident set size may grow by at most a few MB over hundreds of cycles:
a leaked engine, context or arena per cycle would grow it by hundreds of MB (keeping every engine
alive grows it by about 275 MB). Bounded to about a second. CPU engines; tests/gpu/test_cuda_soak.py
is the CUDA twin (device memory and the resident set)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import load_run_and_check, rss_bytes


def _model() -> bytes:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 16, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((512, 256)).astype(np.float32) * 0.05, "w2")
    shape = numpy_helper.from_array(np.array([-1, 256], dtype=np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w2_t"], ["y"]),
             helper.make_node("Transpose", ["w2"], ["w2_t"])]
    # p is [N, 64, 1, 1] -> f [N/4, 256]: four images' pooled features per row.
    graph = helper.make_graph(nodes, "soak", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc to read the resident set")
def test_load_run_close_cycles_do_not_grow_memory():
    if os.environ.get("KILN_SANITIZER_PRELOAD"):
        # ASan keeps freed blocks in its quarantine (256 MB by default), so the resident set grows
        # with whatever a cycle frees; leaks are LeakSanitizer's there, and this runs in the plain suite.
        pytest.skip("the resident set under ASan includes its quarantine of freed memory")
    engine_bytes = kiln.build_onnx(_model(), target="cpu")
    assert len(engine_bytes) > 500_000  # the weights travel in every load
    x = np.random.default_rng(1).standard_normal((4, 16, 12, 12)).astype(np.float32)
    first = {}

    def cycle():
        engine, _ = load_run_and_check(engine_bytes, {"x": x}, first)
        engine.close()

    for _ in range(50):  # warm-up: allocator pools, lazily loaded libraries
        cycle()
    before = rss_bytes()
    for _ in range(400):
        cycle()
    grown = rss_bytes() - before
    # One leaked engine per cycle would be 400 x ~0.6 MB; allow allocator noise.
    assert grown < 16 * 2**20, f"resident set grew by {grown / 2**20:.1f} MB over 400 load/run/close cycles"
