"""int4, uint4, int2, uint2, float4e2m1 and float8e8m0 tensors on the CPU: kiln's engines against
the ONNX reference evaluator (numpy with ml_dtypes) value for value: Cast to and from each type
over every code, the rounding boundaries, out-of-range values, ±Inf and NaN; float8e8m0's three
round modes with saturate on and off; QuantizeLinear / DequantizeLinear per-tensor, per-axis and
blocked (float8e8m0 scales too); packed initializers of odd sizes; the Python API's array types
and errors; the cuda build's refusal. (ONNX Runtime's Python API has no arrays of these types.)"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import cuda_backend_present

SUB_BYTE = {
    TensorProto.INT4: ml_dtypes.int4, TensorProto.UINT4: ml_dtypes.uint4,
    TensorProto.INT2: ml_dtypes.int2, TensorProto.UINT2: ml_dtypes.uint2,
    TensorProto.FLOAT4E2M1: ml_dtypes.float4_e2m1fn,
}
CODED = {**SUB_BYTE, TensorProto.FLOAT8E8M0: ml_dtypes.float8_e8m0fnu}
IDS = {TensorProto.INT4: "int4", TensorProto.UINT4: "uint4", TensorProto.INT2: "int2",
       TensorProto.UINT2: "uint2", TensorProto.FLOAT4E2M1: "float4e2m1", TensorProto.FLOAT8E8M0: "e8m0"}
NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
              np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int8): TensorProto.INT8,
              np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int32): TensorProto.INT32,
              np.dtype(np.int64): TensorProto.INT64,
              **{np.dtype(t): e for e, t in CODED.items()}}


def _model(op, inputs, out_elem, opset=25, initializers=(), **attrs):
    names = [n for n, _ in inputs] + [t.name for t in initializers]
    node = helper.make_node(op, names, ["y"], name="the_node", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in inputs],
        [helper.make_tensor_value_info("y", out_elem, None)], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run_both(model, feeds):
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    return got, want


def _same_values(got, want, what):
    """Equal dtype and values (NaN equals NaN, -0 differs from +0), and the same bytes as ml_dtypes
    holds them."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=what)
    finite = ~np.isnan(g)
    np.testing.assert_array_equal(g[finite], w[finite], err_msg=what)
    np.testing.assert_array_equal(np.signbit(g[finite]), np.signbit(w[finite]), err_msg=f"{what} (sign)")
    if got.dtype.itemsize == 1 and not np.isnan(w.astype(np.float32)).any():
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=f"{what} (bytes)")


def _probe_values() -> np.ndarray:
    """Integers around every sub-byte range, every float4 value and the midpoints between them
    and the floats beside those, powers of two and their neighbours, beyond-range values, ±Inf,
    NaN, float32 denormals and random magnitudes."""
    values = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e30, -1e30, 1e-45, 1e-40, -3e-39, 2.0**31,
              -(2.0**40), 3.4e38]
    values += list(np.arange(-20, 21, 0.5))
    float4 = np.unique(np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float64))
    values += list((float4[1:] + float4[:-1]) / 2)
    values += list(2.0 ** np.arange(-130, 128)) + list(1.5 * 2.0 ** np.arange(-128, 127))
    x = np.array(values, np.float64).astype(np.float32)
    rng = np.random.default_rng(11)
    noise = (rng.standard_normal(400) * 10.0 ** rng.integers(-6, 4, 400)).astype(np.float32)
    return np.concatenate([x, np.nextafter(x, np.float32(0)), np.nextafter(x, np.float32(np.inf)), noise])


@pytest.mark.parametrize("source", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("elem", list(CODED), ids=lambda e: IDS[e])
def test_cast_floats_to_each_type_matches_the_reference(elem, source):
    with np.errstate(all="ignore"):
        x = _probe_values().astype(source)
    model = _model("Cast", [("x", x)], elem, to=elem)
    got, want = _run_both(model, {"x": x})
    _same_values(got, want, f"Cast {np.dtype(source)} -> {IDS[elem]}")


@pytest.mark.parametrize("source", [np.int8, np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("elem", [TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2, TensorProto.UINT2],
                         ids=lambda e: IDS[e])
def test_cast_integers_to_sub_byte_integers_wraps_like_the_reference(elem, source):
    info = np.iinfo(source)
    x = np.array([info.min, info.max, 0, 1, -1 if info.min < 0 else 2, 7, 8, -8, -9, 15, 16, 17, 200, 3, 4],
                 np.int64).astype(source)
    got, want = _run_both(_model("Cast", [("x", x)], elem, to=elem), {"x": x})
    _same_values(got, want, f"Cast {np.dtype(source)} -> {IDS[elem]}")


@pytest.mark.parametrize("target", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8,
                                    TensorProto.UINT8, TensorProto.INT32, TensorProto.DOUBLE,
                                    TensorProto.INT4, TensorProto.UINT2, TensorProto.FLOAT4E2M1])
@pytest.mark.parametrize("elem", list(CODED), ids=lambda e: IDS[e])
def test_cast_every_code_out_matches_the_reference(elem, target):
    bits = 8 if elem == TensorProto.FLOAT8E8M0 else 4 if elem in (
        TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1) else 2
    x = np.arange(2**bits, dtype=np.uint8).view(CODED[elem]).reshape(-1, 2 ** min(bits, 4) // 2)
    model = _model("Cast", [("x", x)], target, to=target)
    with np.errstate(all="ignore"):
        got, want = _run_both(model, {"x": x})
    if elem == TensorProto.FLOAT8E8M0 and target in (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32):
        # float -> integer beyond the target's range is undefined in ONNX: the reference gives 0,
        # kiln saturates (as for every float source with an 8-bit or wider integer target).
        info = np.iinfo(got.dtype)
        values = x.astype(np.float64)
        fits = (np.trunc(values) >= info.min) & (np.trunc(values) <= info.max)
        np.testing.assert_array_equal(got[fits], want[fits], err_msg=f"Cast {IDS[elem]} -> {target}")
        beyond = ~fits & ~np.isnan(values)
        np.testing.assert_array_equal(got[beyond], np.clip(values[beyond], info.min, info.max).astype(got.dtype))
        return
    _same_values(got, want, f"Cast {IDS[elem]} -> {target}")


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [1, 0])
def test_cast_to_float8e8m0_rounds_and_saturates_like_the_reference(round_mode, saturate):
    x = np.abs(_probe_values())
    model = _model("Cast", [("x", x)], TensorProto.FLOAT8E8M0, to=TensorProto.FLOAT8E8M0,
                   saturate=saturate, round_mode=round_mode)
    got, want = _run_both(model, {"x": x})
    _same_values(got, want, f"Cast to float8e8m0 {round_mode} saturate={saturate}")


def test_castlike_takes_an_empty_target_of_each_type():
    x = np.arange(-9, 16).astype(np.float32).reshape(5, 5)
    for elem, dtype in CODED.items():
        like = np.zeros((0,), dtype)
        got, want = _run_both(_model("CastLike", [("x", x), ("like", like)], elem), {"x": x, "like": like})
        _same_values(got, want, f"CastLike -> {IDS[elem]}")


@pytest.mark.parametrize("count", [1, 4, 5, 7, 9])
@pytest.mark.parametrize("elem", list(CODED), ids=lambda e: IDS[e])
def test_packed_initializers_of_odd_sizes_unpack(elem, count):
    rng = np.random.default_rng(count)
    bits = 8 if elem == TensorProto.FLOAT8E8M0 else dtype_bits(elem)
    values = rng.integers(0, 2**bits, count).astype(np.uint8).view(CODED[elem])
    raw = numpy_helper.from_array(values, "w")  # packed raw_data
    typed = helper.make_tensor("w", elem, [count], values, raw=False)  # packed int32_data
    for tensor in (raw, typed):
        model = _model("Cast", [], TensorProto.FLOAT, initializers=[tensor], to=TensorProto.FLOAT)
        got, want = _run_both(model, {})
        _same_values(got, want, f"{IDS[elem]} initializer of {count} ({'raw' if tensor is raw else 'typed'})")


def dtype_bits(elem):
    return 4 if elem in (TensorProto.INT4, TensorProto.UINT4, TensorProto.FLOAT4E2M1) else 2


@pytest.mark.parametrize("elem", list(SUB_BYTE), ids=lambda e: IDS[e])
@pytest.mark.parametrize("layout", ["tensor", "axis", "blocked"])
def test_quantize_and_dequantize_match_the_reference(elem, layout):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 8)) * 6).astype(np.float32)
    x[0, :4] = [0.5, 1.5, -2.5, 100.0]  # ties and beyond the range
    attrs = {}
    if layout == "tensor":
        scale = np.array(0.75, np.float32)
    elif layout == "axis":
        scale = np.array([0.5, 1.0, 2.0], np.float32)
        attrs = {"axis": 0}
    else:
        scale = np.array([[0.5, 1.0], [2.0, 0.25], [1.0, 1.0]], np.float32)
        attrs = {"axis": 1, "block_size": 4}
    dtype = SUB_BYTE[elem]
    if elem == TensorProto.FLOAT4E2M1:
        zero = np.zeros(scale.shape, dtype)
    else:
        lowest = int(ml_dtypes.iinfo(dtype).min)
        zero = (np.arange(scale.size) % 2 + lowest + 1).astype(dtype).reshape(scale.shape)
    q_model = _model("QuantizeLinear", [("x", x), ("s", scale), ("z", zero)], elem, **attrs)
    q, q_want = _run_both(q_model, {"x": x, "s": scale, "z": zero})
    _same_values(q, q_want, f"QuantizeLinear to {IDS[elem]} ({layout})")
    dq_model = _model("DequantizeLinear", [("q", q), ("s", scale), ("z", zero)], TensorProto.FLOAT, **attrs)
    y, y_want = _run_both(dq_model, {"q": q, "s": scale, "z": zero})
    _same_values(y, y_want, f"DequantizeLinear from {IDS[elem]} ({layout})")


def test_dequantize_with_float8e8m0_block_scales_matches_the_reference():
    x = np.arange(-8, 8).astype(ml_dtypes.int4).reshape(2, 8)
    scale = np.array([[0.5, 4.0], [1.0, 2.0**-3]], np.float32).astype(ml_dtypes.float8_e8m0fnu)
    model = _model("DequantizeLinear", [("x", x), ("s", scale)], TensorProto.FLOAT, axis=1, block_size=4,
                   output_dtype=TensorProto.FLOAT)
    got, want = _run_both(model, {"x": x, "s": scale})
    _same_values(got, want, "DequantizeLinear int4 with e8m0 scales")


def test_python_api_takes_plain_integer_arrays_and_refuses_other_dtypes():
    x = np.array([-8, -1, 0, 7], np.int8)
    model = _model("Cast", [("x", x.astype(ml_dtypes.int4))], TensorProto.INT8, to=TensorProto.INT8)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    assert engine.inputs[0].dtype_name == "int4"
    np.testing.assert_array_equal(engine.run({"x": x})["y"], x)  # int8 values for an int4 input
    np.testing.assert_array_equal(engine.run({"x": x.astype(ml_dtypes.int4)})["y"], x)
    with pytest.raises(kiln.KilnError, match=r"'x'.*int4"):
        engine.run({"x": x.astype(np.int16)})
    codes = np.array([0, 1, 7, 15], np.uint8)  # float4e2m1 codes
    f4 = _model("Cast", [("x", codes.view(ml_dtypes.float4_e2m1fn))], TensorProto.FLOAT, to=TensorProto.FLOAT)
    out = kiln.Engine(kiln.build_onnx(f4, target="cpu")).run({"x": codes})["y"]
    np.testing.assert_array_equal(out, [0.0, 0.5, 6.0, -6.0])
    # Outputs come back as ml_dtypes arrays holding the bytes ml_dtypes would.
    to_int4 = _model("Cast", [("x", np.zeros(3, np.float32))], TensorProto.INT4, to=TensorProto.INT4)
    y = kiln.Engine(kiln.build_onnx(to_int4, target="cpu")).run({"x": np.array([-8, -1, 3], np.float32)})["y"]
    assert y.dtype == ml_dtypes.int4
    np.testing.assert_array_equal(y.view(np.uint8), [8, 15, 3])


def test_a_float4_zero_point_must_be_zero():
    x = np.ones(4, np.float32)
    zero = np.array(0.5, ml_dtypes.float4_e2m1fn)
    model = _model("QuantizeLinear", [("x", x), ("s", np.ones((), np.float32)), ("z", zero)],
                   TensorProto.FLOAT4E2M1)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"the_node.*float4e2m1 y_zero_point must be 0"):
        engine.run({"x": x, "s": np.ones((), np.float32), "z": zero})


def test_bad_round_mode_is_refused_naming_node_and_attribute():
    x = np.ones(2, np.float32)
    model = _model("Cast", [("x", x)], TensorProto.FLOAT8E8M0, to=TensorProto.FLOAT8E8M0, round_mode="even")
    with pytest.raises(kiln.KilnError, match=r"the_node.*attribute 'round_mode'.*'even'"):
        kiln.build_onnx(model, target="cpu")



def test_a_cuda_build_refuses_sub_byte_layers_naming_layer_and_dtype():
    if not cuda_backend_present():
        pytest.skip("this kiln has no CUDA backend (or no NVRTC) to build cuda engines with")
    x = np.zeros(4, np.float32)
    model = _model("Cast", [("x", x)], TensorProto.INT4, to=TensorProto.INT4)
    with pytest.raises(kiln.UnsupportedError,
                       match=r"host layers are not allowed \(allow_host_layers\):\n  layer 'the_node' \(op 'Cast'\): output 0 'y' is int4; the cuda kernel takes"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)
