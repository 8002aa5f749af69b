"""Intra-op threads of CPU engines from Python: kiln.Engine(threads=...), Engine.set_threads and
Engine.threads; results do not depend on the thread count, and several calls at once share it."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_ort


def conv_model():
    """x [1, 16, 32, 32] -> Conv(32, 3x3, pad 1) -> y: a GEMM of 32 x 1024 x 144, large enough to
    be split over threads."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 32, 32])],
        initializer=[numpy_helper.from_array(
            rng.standard_normal((32, 16, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def engine_bytes():
    return kiln.build_onnx(conv_model())


def test_results_do_not_depend_on_the_thread_count(engine_bytes):
    x = np.random.default_rng(1).standard_normal((1, 16, 32, 32)).astype(np.float32)
    want = run_ort(conv_model(), {"x": x})["y"]
    outputs = {}
    for threads in (1, 2, 3):
        engine = kiln.Engine(engine_bytes, threads=threads)
        assert engine.threads == threads
        outputs[threads] = engine.run({"x": x})["y"]
        np.testing.assert_allclose(outputs[threads], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs[3], outputs[1], rtol=1e-5, atol=1e-5)


def test_set_threads_applies_to_every_context_and_zero_restores_the_default(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    cpus = len(os.sched_getaffinity(0))
    assert engine.threads == cpus  # one live context: all the CPUs
    engine.set_threads(2)
    assert engine.threads == 2
    engine.set_threads(None)
    assert engine.threads == cpus
    engine.set_threads(0)
    assert engine.threads == cpus


def test_calls_at_once_share_the_cpus_by_default(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    x = np.ones((1, 16, 32, 32), np.float32)
    barrier = threading.Barrier(2)
    errors = []

    def call():
        try:
            barrier.wait()
            for _ in range(3):
                engine.run({"x": x})
        except Exception as e:  # reported below
            errors.append(e)

    workers = [threading.Thread(target=call) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    # Two contexts are live in the pool now (or at least one): each gets its share.
    cpus = len(os.sched_getaffinity(0))
    assert engine.threads in {cpus, max(cpus // 2, 1)}


@pytest.mark.parametrize("bad", [-1, 1025, 1.5, True, "2"])
def test_bad_thread_counts_are_kiln_errors(engine_bytes, bad):
    with pytest.raises(kiln.InvalidArgumentError, match="threads"):
        kiln.Engine(engine_bytes, threads=bad)
    engine = kiln.Engine(engine_bytes, threads=2)
    with pytest.raises(kiln.InvalidArgumentError, match="threads"):
        engine.set_threads(bad)
    assert engine.threads == 2
