"""BitwiseAnd/Or/Xor/Not and BitShift on the CPU (no CUDA kernels yet): every kiln integer dtype
against numpy, including the extremes, and BitShift's opset-28 rules for signed integers (left
shifts wrap; a negative shift or one by the width or more shifts every bit out)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import kiln

INTEGERS = [(np.int8, TensorProto.INT8), (np.int16, TensorProto.INT16), (np.int32, TensorProto.INT32),
            (np.int64, TensorProto.INT64), (np.uint8, TensorProto.UINT8), (np.uint16, TensorProto.UINT16),
            (np.uint32, TensorProto.UINT32)]  # uint64: tests/python/test_unsigned_dtypes.py


def _run(op, arrays, elem, opset=28, **attrs):
    names = [f"x{i}" for i in range(len(arrays))]
    node = helper.make_node(op, names, ["y"], name="bits", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, elem, a.shape) for n, a in zip(names, arrays)],
                              [helper.make_tensor_value_info("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(dict(zip(names, arrays)))["y"]


@pytest.mark.parametrize("dtype,elem", INTEGERS)
def test_bitwise_ops_match_numpy_at_the_extremes(dtype, elem):
    info = np.iinfo(dtype)
    a = np.array([[info.min, info.max, 0, -1 if info.min < 0 else 1, 0x55 % (info.max + 1)]], dtype=dtype)
    b = np.array([[info.max], [info.min], [3]], dtype=dtype)  # broadcasts to [3, 5]
    np.testing.assert_array_equal(_run("BitwiseAnd", [a, b], elem), a & b)
    np.testing.assert_array_equal(_run("BitwiseOr", [a, b], elem), a | b)
    np.testing.assert_array_equal(_run("BitwiseXor", [a, b], elem), a ^ b)
    np.testing.assert_array_equal(_run("BitwiseNot", [a], elem), ~a)


@pytest.mark.parametrize("dtype,elem", INTEGERS)
def test_bit_shift_follows_opset_28(dtype, elem):
    bits = np.iinfo(dtype).bits
    x = np.array([1, 3, np.iinfo(dtype).max, np.iinfo(dtype).min, 5, 6], dtype=dtype)
    s = np.array([1, bits - 1, 2, 1, bits, bits + 3], dtype=dtype)
    left = _run("BitShift", [x, s], elem, direction="LEFT")
    right = _run("BitShift", [x, s], elem, direction="RIGHT")
    wide = x.astype(np.int64)
    in_range = s.astype(np.int64) < bits
    want_left = np.where(in_range, (wide << np.minimum(s, bits - 1).astype(np.int64)), 0).astype(dtype)
    want_right = np.where(in_range, wide >> np.minimum(s, bits - 1).astype(np.int64), np.where(wide < 0, -1, 0))
    np.testing.assert_array_equal(left, want_left)
    np.testing.assert_array_equal(right, want_right.astype(dtype))


def test_bit_shift_by_a_negative_amount_shifts_everything_out():
    x = np.array([-8, 4, -1], dtype=np.int32)
    s = np.array([-1, -8, -40], dtype=np.int32)
    np.testing.assert_array_equal(_run("BitShift", [x, s], TensorProto.INT32, direction="LEFT"), [0, 0, 0])
    np.testing.assert_array_equal(_run("BitShift", [x, s], TensorProto.INT32, direction="RIGHT"), [-1, 0, -1])


def test_bit_shift_needs_a_direction_and_integers():
    x = np.array([1, 2], dtype=np.int32)
    with pytest.raises(kiln.KilnError, match=r"bits.*attribute 'direction' must be \"LEFT\" or \"RIGHT\", got \"UP\""):
        _run("BitShift", [x, x], TensorProto.INT32, direction="UP")
    f = np.array([1.0, 2.0], dtype=np.float32)
    with pytest.raises(kiln.KilnError, match=r"bits.*float32"):
        _run("BitwiseAnd", [f, f], TensorProto.FLOAT)
