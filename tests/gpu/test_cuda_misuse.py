"""Issue 11 on CUDA engines: NaN through the fused epilogues (cuDNN's fused Conv+bias+Relu,
cuBLASLt's bias/Relu epilogues, kiln's depthwise kernel), one Python Engine from many threads, and
kiln_context_execute refusing a stream as kiln.h says. Written without a GPU: the CPU halves run
in tests/python (test_fused_nan.py, test_misuse.py)."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest
from onnx import helper

import kiln
from kiln import _capi
from kiln_testing import OpCase, run_ort
from test_fused_nan import CASES, NAN
from test_misuse import WIDTH, mlp_model


def _depthwise_relu() -> OpCase:
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (1, 8, 12, 12)).astype(np.float32)
    x[0, 3, 5, 6] = NAN
    consts = {"c_w": rng.uniform(-1, 1, (8, 1, 3, 3)).astype(np.float32),
              "c_b": rng.uniform(-1, 1, (8,)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "c_w", "c_b"], ["conv"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Relu", ["conv"], ["y"])]
    return OpCase("depthwise_relu", nodes, {"x": x}, consts)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", [*CASES, _depthwise_relu()], ids=lambda c: c.id)
def test_fused_relu_keeps_nan(case: OpCase, precision: str):
    model = case.model()
    want = run_ort(model, case.feeds)["y"]
    got = kiln.Engine(kiln.build_onnx(model, target="cuda", precision=precision)).run(case.feeds)["y"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions differ from ONNX Runtime")
    finite = ~np.isnan(want)
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(got[finite], want[finite], rtol=tolerance, atol=tolerance)


def test_one_engine_from_64_threads_gives_single_threaded_results():
    engine = kiln.Engine(kiln.build_onnx(mlp_model(), target="cuda",
                                         profiles={"x": {"min": (1, WIDTH), "max": (64, WIDTH)}}))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1 + (i * 7) % 64, WIDTH)).astype(np.float32) for i in range(16)]
    expected = [engine.run({"x": x})["y"] for x in inputs]
    bad, errors = [], []

    def worker(t):
        try:
            for call in range(200):
                i = (t * 5 + call) % len(inputs)
                if not np.array_equal(engine.run({"x": inputs[i]})["y"], expected[i]):
                    bad.append((t, call))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert not bad, f"{len(bad)} of {64 * 200} results differ from the single-threaded run"


def test_execute_refuses_a_stream_as_the_header_says():
    data = kiln.build_onnx(mlp_model(), target="cuda", profiles={"x": {"min": (1, WIDTH), "max": (4, WIDTH)}})
    lib = _capi.runtime()
    engine, context = ctypes.c_void_p(), ctypes.c_void_p()
    _capi.check(lib.kiln_engine_load_bytes(data, len(data), ctypes.byref(engine)))
    _capi.check(lib.kiln_context_create(engine, ctypes.byref(context)))
    try:
        x = np.ones((2, WIDTH), np.float32)
        shape = (ctypes.c_int64 * 2)(2, WIDTH)
        tensor = _capi.KilnTensor(1, 2, ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)), x.ctypes.data)
        names = (ctypes.c_char_p * 1)(b"x")
        status = lib.kiln_context_execute(context, 1, names, ctypes.byref(tensor), ctypes.c_void_p(1))
        assert status == kiln.InvalidArgumentError.status
        assert "kiln_context_execute_bound" in _capi.last_error()
        _capi.check(lib.kiln_context_execute(context, 1, names, ctypes.byref(tensor), None))
    finally:
        lib.kiln_context_release(context)
        lib.kiln_engine_release(engine)
