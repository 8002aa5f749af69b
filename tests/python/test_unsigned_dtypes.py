"""uint16/uint32/uint64 tensors on the CPU: every op family that takes them against numpy (unsigned
wrap-around, values above INT64_MAX that int64 cannot hold, division, shifts by the width or more,
casts), and against ONNX Runtime where its CPU provider has a kernel for the op and type (it lacks
many unsigned ones). The cuda backend has no kernels for them: a cuda build refuses such a layer,
naming it and the dtype."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import cuda_backend_present

UNSIGNED = [(np.uint16, TensorProto.UINT16), (np.uint32, TensorProto.UINT32), (np.uint64, TensorProto.UINT64)]
IDS = ["uint16", "uint32", "uint64"]


def _model(op, arrays, elems, out_elem, opset=18, initializers=(), num_outputs=1, **attrs):
    names = [f"x{i}" for i in range(len(arrays))]
    outputs = [f"y{i}" for i in range(num_outputs)]
    node = helper.make_node(op, names + [t.name for t in initializers], outputs, name="the_node", **attrs)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info(n, e, a.shape) for n, a, e in zip(names, arrays, elems)],
                              [helper.make_tensor_value_info(o, out_elem, None) for o in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _kiln(model, arrays):
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    result = engine.run({f"x{i}": a for i, a in enumerate(arrays)})
    return [result[f"y{i}"] for i in range(len(result))]


def _ort(model, arrays):
    """ONNX Runtime's outputs, or None where its CPU provider has no kernel for the op and type."""
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {f"x{i}": a for i, a in enumerate(arrays)})
    except Exception as error:  # noqa: BLE001  (NOT_IMPLEMENTED: no kernel for this type)
        # No kernel for this type, or a type outside the op's ONNX constraint (Sum takes floats
        # only; kiln's Sum takes every numeric type).
        if any(word in str(error) for word in ("NOT_IMPLEMENTED", "Could not find an implementation", "Type Error")):
            return None
        raise


def _check(op, arrays, want, elem, out_elem=None, **attrs):
    """kiln's output equals `want` (numpy) exactly, in dtype too, and ORT's where it has the kernel."""
    model = _model(op, arrays, [elem] * len(arrays), out_elem or elem, **attrs)
    (got,) = _kiln(model, arrays)
    assert got.dtype == want.dtype, (op, got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want, err_msg=op)
    reference = _ort(model, arrays)
    if reference is not None:
        np.testing.assert_array_equal(got, reference[0], err_msg=f"{op} vs onnxruntime")
    return got


def _extremes(dtype):
    top = np.iinfo(dtype).max
    a = np.array([[top, top - 1, 0, 1, top // 2 + 1, 12345 % top]], dtype=dtype)
    b = np.array([[1], [top], [7]], dtype=dtype)  # broadcasts to [3, 6]
    return a, b


@pytest.mark.parametrize("dtype,elem", UNSIGNED, ids=IDS)
def test_add_sub_mul_wrap_around_like_numpy(dtype, elem):
    a, b = _extremes(dtype)
    with np.errstate(over="ignore"):
        _check("Add", [a, b], a + b, elem)  # top + 1 == 0
        _check("Sub", [a, b], a - b, elem)  # 0 - 1 == top
        _check("Sub", [b, a], b - a, elem)
        _check("Mul", [a, b], a * b, elem)


@pytest.mark.parametrize("dtype,elem", UNSIGNED, ids=IDS)
def test_div_truncates_and_mod_has_no_sign_rules(dtype, elem):
    a, b = _extremes(dtype)
    _check("Div", [a, b], a // b, elem)
    _check("Div", [b, a[:, 1:4] + dtype(1)], b // (a[:, 1:4] + dtype(1)), elem)
    for fmod in (0, 1):
        got = _check("Mod", [a, b], np.mod(a, b), elem, fmod=fmod)
        np.testing.assert_array_equal(got, np.fmod(a, b))


def test_integer_division_by_zero_is_an_error_not_a_crash():
    a = np.array([5, 6], dtype=np.uint32)
    b = np.array([1, 0], dtype=np.uint32)
    model = _model("Div", [a, b], [TensorProto.UINT32] * 2, TensorProto.UINT32)
    with pytest.raises(kiln.InvalidArgumentError, match="division by zero"):
        _kiln(model, [a, b])


def test_uint64_values_above_int64_max_compare_and_divide_exactly():
    a = np.array([2**64 - 1, 2**63, 2**63 + 5, 3], dtype=np.uint64)
    b = np.array([2**63, 2**63, 2**63 - 1, 2**64 - 2], dtype=np.uint64)
    _check("Div", [a, b], a // b, TensorProto.UINT64)
    _check("Mod", [a, b], a % b, TensorProto.UINT64)
    for op, fn in [("Equal", np.equal), ("Less", np.less), ("Greater", np.greater),
                   ("LessOrEqual", np.less_equal), ("GreaterOrEqual", np.greater_equal)]:
        _check(op, [a, b], fn(a, b), TensorProto.UINT64, TensorProto.BOOL)
    _check("Max", [a, b], np.maximum(a, b), TensorProto.UINT64)
    _check("Min", [a, b], np.minimum(a, b), TensorProto.UINT64)


@pytest.mark.parametrize("dtype,elem", UNSIGNED, ids=IDS)
def test_comparisons_and_variadic_min_max(dtype, elem):
    a, b = _extremes(dtype)
    for op, fn in [("Equal", np.equal), ("Less", np.less), ("Greater", np.greater),
                   ("LessOrEqual", np.less_equal), ("GreaterOrEqual", np.greater_equal)]:
        _check(op, [a, b], fn(a, b), elem, TensorProto.BOOL)
    c = np.array([np.iinfo(dtype).max // 3], dtype=dtype)
    _check("Max", [a, b, c], np.maximum(np.maximum(a, b), c), elem)
    _check("Min", [a, b, c], np.minimum(np.minimum(a, b), c), elem)
    with np.errstate(over="ignore"):
        _check("Sum", [a, b, c], a + b + c, elem)


@pytest.mark.parametrize("dtype,elem", UNSIGNED, ids=IDS)
def test_bitwise_ops_and_shifts_by_the_width_or_more(dtype, elem):
    a, b = _extremes(dtype)
    _check("BitwiseAnd", [a, b], a & b, elem)
    _check("BitwiseOr", [a, b], a | b, elem)
    _check("BitwiseXor", [a, b], a ^ b, elem)
    _check("BitwiseNot", [a], ~a, elem)
    bits = np.iinfo(dtype).bits
    x = np.array([1, 3, np.iinfo(dtype).max, np.iinfo(dtype).max, 5, 6], dtype=dtype)
    s = np.array([1, bits - 1, 2, bits, bits + 3, np.iinfo(dtype).max], dtype=dtype)
    # numpy's shifts (which the ONNX reference runs) give 0 for a shift by the width or more.
    want_left, want_right = np.left_shift(x, s), np.right_shift(x, s)
    assert want_left[3] == 0 and want_right[3] == 0 and want_right[2] == np.iinfo(dtype).max >> 2
    _check("BitShift", [x, s], want_left, elem, direction="LEFT")
    _check("BitShift", [x, s], want_right, elem, direction="RIGHT")


@pytest.mark.parametrize("dtype,elem", [(np.uint32, TensorProto.UINT32), (np.uint64, TensorProto.UINT64)],
                         ids=["uint32", "uint64"])
def test_pow_with_unsigned_exponents(dtype, elem):
    base = np.array([2.0, -3.0, 0.5, 10.0], dtype=np.float32)
    exponent = np.array([3, 2, 4, 0], dtype=dtype)
    model = _model("Pow", [base, exponent], [TensorProto.FLOAT, elem], TensorProto.FLOAT)
    (got,) = _kiln(model, [base, exponent])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.power(base, exponent.astype(np.float64)).astype(np.float32), rtol=1e-6)


def test_top_k_and_arg_max_rank_values_above_int64_max():
    x = np.array([[3, 2**64 - 1, 2**63, 0, 2**63 + 1]], dtype=np.uint64)
    k = numpy_helper.from_array(np.array([3], dtype=np.int64), "k")
    model = _model("TopK", [x], [TensorProto.UINT64], TensorProto.UINT64, initializers=[k], num_outputs=2)
    model.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64
    values, indices = _kiln(model, [x])
    np.testing.assert_array_equal(values, [[2**64 - 1, 2**63 + 1, 2**63]])
    np.testing.assert_array_equal(indices, [[1, 4, 2]])
    assert values.dtype == np.uint64
    arg = _model("ArgMax", [x], [TensorProto.UINT64], TensorProto.INT64, axis=1)
    np.testing.assert_array_equal(_kiln(arg, [x])[0], [[1]])


@pytest.mark.parametrize("to_np,to_elem", [(np.float32, TensorProto.FLOAT), (np.float64, TensorProto.DOUBLE),
                                           (np.int64, TensorProto.INT64), (np.int32, TensorProto.INT32),
                                           (np.uint8, TensorProto.UINT8), (np.uint16, TensorProto.UINT16)],
                         ids=["float32", "float64", "int64", "int32", "uint8", "uint16"])
def test_cast_from_uint64(to_np, to_elem):
    x = np.array([2**64 - 1, 2**63, 2**53 + 1, 70000, 0], dtype=np.uint64)
    model = _model("Cast", [x], [TensorProto.UINT64], to_elem, to=to_elem)
    (got,) = _kiln(model, [x])
    np.testing.assert_array_equal(got, x.astype(to_np))  # integers wrap, floats round to nearest
    reference = _ort(model, [x])
    if reference is not None:
        np.testing.assert_array_equal(got, reference[0])


@pytest.mark.parametrize("from_np,from_elem", [(np.int64, TensorProto.INT64), (np.int32, TensorProto.INT32),
                                               (np.uint32, TensorProto.UINT32), (np.bool_, TensorProto.BOOL)],
                         ids=["int64", "int32", "uint32", "bool"])
def test_cast_to_uint64_from_integers_wraps(from_np, from_elem):
    x = np.array([-1, 0, 7, -(2**31)], dtype=np.int64).astype(from_np)
    model = _model("Cast", [x], [from_elem], TensorProto.UINT64, to=TensorProto.UINT64)
    np.testing.assert_array_equal(_kiln(model, [x])[0], x.astype(np.uint64))


def test_cast_from_floats_to_unsigned_truncates_and_saturates():
    x = np.array([0.0, 1.9, 4e9, 1.5e19, 1e30, -3.0], dtype=np.float64)
    model = _model("Cast", [x], [TensorProto.DOUBLE], TensorProto.UINT64, to=TensorProto.UINT64)
    got = _kiln(model, [x])[0]
    # In range: truncation toward zero, as numpy. Out of range (undefined in ONNX and C++):
    # saturation to [0, 2**64 - 1].
    np.testing.assert_array_equal(got[:4], x[:4].astype(np.uint64))
    np.testing.assert_array_equal(got[4:], [2**64 - 1, 0])
    u16 = _model("Cast", [x], [TensorProto.DOUBLE], TensorProto.UINT16, to=TensorProto.UINT16)
    np.testing.assert_array_equal(_kiln(u16, [x])[0], [0, 1, 65535, 65535, 65535, 0])


def test_constants_in_raw_data_and_in_uint64_data():
    x = np.array([1, 2], dtype=np.uint64)
    raw = numpy_helper.from_array(np.array([2**64 - 1, 2**63], dtype=np.uint64), "raw")
    typed = helper.make_tensor("typed", TensorProto.UINT32, [2], [2**32 - 1, 5])  # in uint64_data
    assert not typed.raw_data and list(typed.uint64_data) == [2**32 - 1, 5]
    cast = helper.make_node("Cast", ["typed"], ["typed64"], to=TensorProto.UINT64)
    add = helper.make_node("Add", ["x0", "raw"], ["sum"])
    out = helper.make_node("Add", ["sum", "typed64"], ["y0"])
    graph = helper.make_graph([cast, add, out], "g", [helper.make_tensor_value_info("x0", TensorProto.UINT64, [2])],
                              [helper.make_tensor_value_info("y0", TensorProto.UINT64, [2])], [raw, typed])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with np.errstate(over="ignore"):
        want = x + np.array([2**64 - 1, 2**63], dtype=np.uint64) + np.array([2**32 - 1, 5], dtype=np.uint64)
    np.testing.assert_array_equal(_kiln(model, [x])[0], want)


def test_bindings_report_numpy_unsigned_dtypes():
    a = np.zeros(3, dtype=np.uint32)
    engine = kiln.Engine(kiln.build_onnx(_model("Add", [a, a], [TensorProto.UINT32] * 2, TensorProto.UINT32)))
    assert [b.dtype for b in engine.inputs] == [np.dtype(np.uint32)] * 2
    assert engine.inputs[0].dtype_name == "uint32"
    assert engine.outputs[0].dtype == np.dtype(np.uint32)
    with pytest.raises(kiln.KilnError, match="uint32"):
        engine.run({"x0": a.astype(np.int32), "x1": a})


def test_uint16_arrays_still_feed_bfloat16_bindings_as_bits():
    model = _model("Identity", [np.zeros(2, np.uint16)], [TensorProto.BFLOAT16], TensorProto.BFLOAT16)
    engine = kiln.Engine(kiln.build_onnx(model))
    assert engine.inputs[0].dtype_name == "bfloat16"
    bits = np.array([0x3F80, 0xC060], dtype=np.uint16)  # 1.0, -3.5
    np.testing.assert_array_equal(engine.run({"x0": bits})["y0"], bits)
    u16 = kiln.Engine(kiln.build_onnx(_model("Identity", [bits], [TensorProto.UINT16], TensorProto.UINT16)))
    assert u16.inputs[0].dtype_name == "uint16"
    np.testing.assert_array_equal(u16.run({"x0": bits})["y0"], bits)


def test_signed_only_ops_refuse_unsigned_inputs_naming_the_dtype():
    x = np.array([1, 2], dtype=np.uint64)
    with pytest.raises(kiln.KilnError, match="uint64"):
        kiln.build_onnx(_model("Neg", [x], [TensorProto.UINT64], TensorProto.UINT64))



def test_a_cuda_build_refuses_unsigned_layers_naming_layer_and_dtype():
    # The cuda backend has no kernels for these dtypes (several of its kernels pick their code by
    # element size alone): the cross-compiling build checks what a load checks, so the engine is
    # refused here, not run wrong on the GPU. A build on a GPU refuses it at the same check.
    if not cuda_backend_present():
        pytest.skip("this kiln has no CUDA backend (or no NVRTC) to build cuda engines with")
    x = np.zeros(4, dtype=np.uint32)
    model = _model("Add", [x, x], [TensorProto.UINT32] * 2, TensorProto.UINT32)
    assert kiln.build_onnx(model, target="cpu")
    with pytest.raises(kiln.UnsupportedError,
                       match=r"host layers are not allowed \(allow_host_layers\):\n  layer 'the_node' \(op 'Add'\): input 0 '.*' is uint32; "
                             r"the cuda kernel takes float32, "):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)
