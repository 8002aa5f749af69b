"""The misuse matrix of the Python runtime API (issue 11, item 4): each entry point of a CPU
kiln.Engine (run, run_bound, the bindings) with each kind of bad or unusual argument. Every cell is
either served right (the result equals the well-formed call's) or refused with a kiln error that
names the problem; none crashes, and the engine keeps working after each. The CUDA cells (device
pointers, streams) are in tests/gpu/test_cuda_misuse.py; the C API's in
tests/unit/c_api_misuse_test.cpp."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from test_misuse import WIDTH, mlp_model


@pytest.fixture(scope="module")
def engine() -> kiln.Engine:
    return kiln.Engine(kiln.build_onnx(mlp_model(), profiles={"x": {"min": (1, WIDTH), "max": (64, WIDTH)}}))


def _x(batch=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, WIDTH)).astype(np.float32)


def _reference(engine, x) -> np.ndarray:
    return engine.run({"x": np.ascontiguousarray(x, dtype=np.float32)})["y"]


# ---- run(): arrays that are unusual but valid are served exactly ---------------------------------

def _fortran(x):
    return np.asfortranarray(x)


def _strided(x):
    wide = np.zeros((x.shape[0], 2 * WIDTH), dtype=np.float32)
    wide[:, ::2] = x
    return wide[:, ::2]


def _misaligned(x):
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    view = np.frombuffer(raw.data, dtype=np.float32, count=x.size, offset=1).reshape(x.shape)
    view[...] = x
    assert not view.flags.aligned
    return view


def _read_only(x):
    y = x.copy()
    y.flags.writeable = False
    return y


def _big_endian(x):
    return x.astype(">f4")


def _nested_list(x):
    return x.tolist()


@pytest.mark.parametrize("form", [_fortran, _strided, _misaligned, _read_only, _big_endian, _nested_list],
                         ids=lambda f: f.__name__.strip("_"))
def test_run_serves_valid_arrays_of_any_memory_form(engine, form):
    x = _x()
    value = form(x)
    if form is _nested_list:  # a Python list of floats becomes float64: refused, never cast
        with pytest.raises(kiln.KilnError, match="float64|dtype"):
            engine.run({"x": value})
        return
    np.testing.assert_array_equal(engine.run({"x": value})["y"], _reference(engine, x))


def test_nan_and_inf_go_through_as_values(engine):
    x = _x()
    x[0, 0], x[1, 3], x[2, 5] = np.nan, np.inf, -np.inf
    y = engine.run({"x": x})["y"]
    assert np.isnan(y[0]).any()  # a NaN input reaches the output, never an error
    assert not np.isfinite(y[1:3]).all()
    clean = x.copy()
    clean[:3] = 0.0
    np.testing.assert_array_equal(y[3], engine.run({"x": clean})["y"][3])  # other rows untouched


# ---- run(): refused, with the problem named -------------------------------------------------------

@pytest.mark.parametrize("feeds,needle", [
    ({"x": None}, "dtype object|has no kiln equivalent"),
    ({"x": "text"}, "has no kiln equivalent"),
    ({"x": np.float32(1.0)}, "rank|shape"),
    ({"x": np.zeros((0, WIDTH), np.float32)}, "x.*0|profile|range"),
    ({"x": np.zeros((65, WIDTH), np.float32)}, "x.*65|profile|range"),
    ({"x": np.zeros((4, WIDTH + 1), np.float32)}, "x.*33|expected"),
    ({"x": np.zeros((4, WIDTH), np.float64)}, "float64|dtype"),
    ({"x": np.zeros((4, WIDTH, 1), np.float32)}, "rank|shape"),
    ({}, "x.*missing|missing.*x|not given|expected"),
    ({"x": np.zeros((4, WIDTH), np.float32), "extra": np.zeros(1, np.float32)}, "extra"),
], ids=["none", "string", "scalar", "zero_batch", "over_profile", "wrong_width", "float64", "rank3",
        "missing", "unknown_name"])
def test_run_refuses_bad_feeds_naming_the_problem(engine, feeds, needle):
    with pytest.raises(kiln.KilnError, match=needle):
        engine.run(feeds)
    np.testing.assert_array_equal(engine.run({"x": _x()})["y"], _reference(engine, _x()))  # still works


def test_run_refuses_a_feeds_object_that_is_not_a_mapping(engine):
    with pytest.raises((TypeError, AttributeError, kiln.KilnError)):
        engine.run([("x", _x())])  # type: ignore[arg-type]


# ---- run_bound(): caller-owned host buffers on a CPU engine ---------------------------------------

def _bound(x: np.ndarray, y: np.ndarray):
    return ({"x": (x.ctypes.data, x.shape, x.dtype)}, {"y": (y.ctypes.data, y.shape, y.dtype)})


def test_run_bound_writes_the_callers_buffer(engine):
    x = _x(5)
    y = np.full((5, 10), np.nan, np.float32)
    engine.run_bound(*_bound(x, y))
    np.testing.assert_array_equal(y, _reference(engine, x))


@pytest.mark.parametrize("cell", ["null_input", "null_output", "output_shape", "output_dtype", "input_dtype",
                                  "unknown_output", "out_of_profile", "misaligned_input", "misaligned_output"])
def test_run_bound_refuses_bad_buffers_naming_the_problem(engine, cell):
    x = _x(5)
    y = np.zeros((5, 10), np.float32)
    inputs, outputs = _bound(x, y)
    if cell == "null_input":
        inputs = {"x": (0, x.shape, x.dtype)}
    elif cell == "null_output":
        outputs = {"y": (0, y.shape, y.dtype)}
    elif cell == "output_shape":
        outputs = {"y": (y.ctypes.data, (5, 9), y.dtype)}
    elif cell == "output_dtype":
        outputs = {"y": (y.ctypes.data, y.shape, np.dtype(np.int32))}
    elif cell == "input_dtype":
        inputs = {"x": (x.ctypes.data, x.shape, np.dtype(np.int32))}
    elif cell == "unknown_output":
        outputs = {"z": (y.ctypes.data, y.shape, y.dtype)}
    elif cell == "out_of_profile":
        big = np.zeros((65, WIDTH), np.float32)
        inputs = {"x": (big.ctypes.data, big.shape, big.dtype)}
    elif cell == "misaligned_input":  # kernels read whole float32s: the runtime refuses, never misreads
        unaligned = _misaligned(x)
        inputs = {"x": (unaligned.ctypes.data, x.shape, x.dtype)}
    elif cell == "misaligned_output":
        raw = np.zeros(y.nbytes + 1, np.uint8)
        outputs = {"y": (raw.ctypes.data + 1, y.shape, y.dtype)}
    with pytest.raises(kiln.KilnError) as error:
        engine.run_bound(inputs, outputs)
    message = str(error.value)
    assert ("'x'" in message or "'y'" in message or "'z'" in message or "x" in message), message
    if cell.startswith("misaligned"):
        assert "not aligned" in message, message
    assert not y.any() or cell == "out_of_profile"  # nothing written on a refused call
    np.testing.assert_array_equal(engine.run({"x": x})["y"], _reference(engine, x))  # still works


def test_run_bound_refuses_an_unknown_dtype_before_calling_the_runtime(engine):
    x = _x(2)
    with pytest.raises(kiln.KilnError, match="no kiln equivalent"):
        engine.run_bound({"x": (x.ctypes.data, x.shape, np.dtype(np.complex64))}, {})


def test_bindings_are_read_only_descriptions(engine):
    binding = engine.inputs[0]
    assert binding.name == "x" and binding.dtype == np.float32
    with pytest.raises((AttributeError, TypeError)):
        binding.name = "other"  # type: ignore[misc]
    assert engine.inputs[0].name == "x"


def test_bfloat16_inputs_come_as_ml_dtypes_arrays_or_bit_patterns():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString(), target="cpu"))
    x = np.array([1.5, -2.0, 3.25, 0.1], dtype=ml_dtypes.bfloat16)
    y = engine.run({"x": x})["y"]
    assert y.dtype == np.uint16  # outputs are the bit patterns
    np.testing.assert_array_equal(y.view(ml_dtypes.bfloat16).astype(np.float32), (x.astype(np.float32) * 2))
    np.testing.assert_array_equal(engine.run({"x": x.view(np.uint16)})["y"], y)
    assert onnx  # imported for the model above
