"""Execution on caller-owned buffers (Engine.run_bound, kiln_context_execute_bound) on a CPU engine."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from test_bad_input import two_input_model


@pytest.fixture(scope="module")
def engine() -> kiln.Engine:
    return kiln.Engine(kiln.build_onnx(two_input_model().SerializeToString()))


def bound(array: np.ndarray) -> tuple:
    return (array.ctypes.data, array.shape, array.dtype)


def test_run_bound_writes_the_callers_output(engine):
    rng = np.random.default_rng(3)
    image = rng.standard_normal((2, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    y = np.full((2, 4), -7.0, np.float32)
    engine.run_bound({"image": bound(image), "bias": bound(bias)}, {"y": bound(y)})
    np.testing.assert_array_equal(y, engine.run({"image": image, "bias": bias})["y"])
    engine.set_cuda_graphs(False)  # no effect on a CPU engine, and no error


def test_run_bound_rejects_a_wrong_output_shape_and_a_stream(engine):
    image = np.zeros((2, 3), np.float32)
    bias = np.zeros(4, np.float32)
    y = np.zeros((4, 2), np.float32)
    with pytest.raises(kiln.InvalidArgumentError, match=r"output 'y': expected float32\[2, 4\]"):
        engine.run_bound({"image": bound(image), "bias": bound(bias)}, {"y": bound(y)})
    y = np.zeros((2, 4), np.float32)
    with pytest.raises(kiln.InvalidArgumentError, match="stream"):
        engine.run_bound({"image": bound(image), "bias": bound(bias)}, {"y": bound(y)}, stream=1234)
    with pytest.raises(kiln.InvalidArgumentError, match="missing output 'y'"):
        engine.run_bound({"image": bound(image), "bias": bound(bias)}, {})
