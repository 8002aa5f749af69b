"""float8 tensors and QuantizeLinear / DequantizeLinear on the CPU: kiln's engines against the ONNX
reference evaluator (bit for bit) and ONNX Runtime (its CPU provider has float8 Cast and Q/DQ):
every float8 format with saturate on and off over all 256 codes, every rounding boundary, ±Inf,
NaN and denormals; per-tensor, per-axis and blocked Q/DQ to int8/uint8/int16/uint16 and float8;
errors naming node and attribute; the cuda build's refusal."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import cuda_backend_present

FLOAT8 = {
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
}
F8_IDS = ["e4m3fn", "e4m3fnuz", "e5m2", "e5m2fnuz"]
NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
              np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
              np.dtype(np.int16): TensorProto.INT16, np.dtype(np.uint16): TensorProto.UINT16,
              np.dtype(np.int32): TensorProto.INT32,
              np.dtype(ml_dtypes.bfloat16): TensorProto.BFLOAT16,
              **{np.dtype(t): e for e, t in FLOAT8.items()}}


def _model(op, inputs, out_elem, opset=21, **attrs):
    names = [n for n, _ in inputs]
    node = helper.make_node(op, names, ["y"], name="the_node", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in inputs],
        [helper.make_tensor_value_info("y", out_elem, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _kiln(model, feeds):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]


def _same_values(got, want, what):
    """Exact equality as values (NaN equals NaN, -0 differs from +0)."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    g, w = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=what)
    finite = ~np.isnan(g)
    np.testing.assert_array_equal(g[finite], w[finite], err_msg=what)
    np.testing.assert_array_equal(np.signbit(g[finite]), np.signbit(w[finite]), err_msg=f"{what} (sign)")


def _probe_values() -> np.ndarray:
    """Every float8 value of every format, the midpoints between neighbours and the floats just
    beside them, beyond-range values, ±Inf, NaN, float32 denormals and random magnitudes."""
    values = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-45, -1e-45, 1e-40, -3e-39]
    for dtype in FLOAT8.values():
        codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float64)
        finite = np.unique(codes[np.isfinite(codes)])
        mids = (finite[1:] + finite[:-1]) / 2
        edge = [finite[-1] * 1.0625, finite[-1] * 1.07, -finite[-1] * 1.0625]  # beyond the max
        values += list(finite) + list(mids) + edge
    x = np.array(values, np.float64).astype(np.float32)
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(500) * 10.0 ** rng.integers(-9, 6, 500)).astype(np.float32)
    return np.concatenate([x, np.nextafter(x, np.float32(0)), np.nextafter(x, np.float32(np.inf)), noise])


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("elem", list(FLOAT8), ids=F8_IDS)
def test_cast_float32_to_float8_matches_the_reference_bit_for_bit(elem, saturate):
    x = _probe_values()
    model = _model("Cast", [("x", x)], elem, opset=21, to=elem, saturate=saturate)
    got = _kiln(model, {"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    _same_values(got, want, f"Cast to {FLOAT8[elem].__name__} saturate={saturate}")
    # Finite codes are one value each; NaN codes may differ in their sign bit only.
    nan = np.isnan(want.astype(np.float32))
    np.testing.assert_array_equal(got.view(np.uint8)[~nan], want.view(np.uint8)[~nan])


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("elem", list(FLOAT8), ids=F8_IDS)
def test_cast_to_float8_and_back_matches_onnxruntime(elem, saturate):
    # ORT hands no float8 arrays to numpy: the model casts back to float32 inside.
    x = _probe_values()
    nodes = [helper.make_node("Cast", ["x"], ["q"], to=elem, saturate=saturate),
             helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    got = _kiln(model, {"x": x})
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    differ = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    if elem == TensorProto.FLOAT8E4M3FN and not saturate:
        # ONNX Runtime rounds values in (464, 496) down to 448 without saturate; the ONNX spec,
        # its reference and ml_dtypes give NaN (they exceed 448 after rounding). kiln follows ONNX.
        assert np.all((np.abs(x[differ]) > 464) & (np.abs(x[differ]) < 496)), x[differ]
        assert np.all(np.isnan(got[differ]))
    else:
        assert not differ.any(), (x[differ][:8], got[differ][:8], want[differ][:8])


@pytest.mark.parametrize("elem", list(FLOAT8), ids=F8_IDS)
@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT32],
                         ids=["float32", "float16", "float64", "int32"])
def test_every_float8_code_decodes_like_ml_dtypes(elem, to):
    codes = np.arange(256, dtype=np.uint8).view(FLOAT8[elem])
    model = _model("Cast", [("x", codes)], to, to=to)
    got = _kiln(model, {"x": codes})
    if to == TensorProto.INT32:  # kiln's float -> int: truncate, saturate, NaN -> 0
        values = codes.astype(np.float64)
        want = np.where(np.isnan(values), 0, np.clip(np.trunc(np.nan_to_num(values, posinf=2**31 - 1,
                                                                               neginf=-2**31)),
                                                   -2**31, 2**31 - 1)).astype(np.int32)
        np.testing.assert_array_equal(got, want)
    else:
        want = ReferenceEvaluator(model).run(None, {"x": codes})[0]
        _same_values(got, want, f"{FLOAT8[elem].__name__} -> {to}")


def test_float8_inputs_take_uint8_codes_and_float8_to_float8_casts_go_through_float32():
    codes = np.arange(256, dtype=np.uint8)
    model = _model("Cast", [("x", codes.view(ml_dtypes.float8_e4m3fn))], TensorProto.FLOAT8E5M2,
                   to=TensorProto.FLOAT8E5M2, saturate=0)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    assert engine.inputs[0].dtype_name == "float8e4m3fn"
    got = engine.run({"x": codes})["y"]  # uint8 codes for a float8 binding
    want = ReferenceEvaluator(model).run(None, {"x": codes.view(ml_dtypes.float8_e4m3fn)})[0]
    _same_values(got, want, "e4m3fn -> e5m2")


def test_float8_initializers_decode_from_int32_data_and_raw_data():
    values = np.array([0.5, -3.0, 448.0, np.nan], np.float32).astype(ml_dtypes.float8_e4m3fn)
    # make_tensor stores float8 values as their codes in int32_data, one code per int32.
    as_int32 = helper.make_tensor("c0", TensorProto.FLOAT8E4M3FN, [4], values.astype(np.float32).tolist())
    assert list(as_int32.int32_data) == values.view(np.uint8).tolist()
    as_raw = helper.make_tensor("c1", TensorProto.FLOAT8E4M3FN, [4], values.tobytes(), raw=True)
    nodes = [helper.make_node("Cast", ["c0"], ["a"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["c1"], ["b"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Add", ["s", "x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [as_int32, as_raw])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    got = _kiln(model, {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(got, [1.0, -6.0, 896.0, np.nan])


# ---- QuantizeLinear / DequantizeLinear ----------------------------------------------------------

INT_TYPES = [np.int8, np.uint8, np.int16, np.uint16]


def _qdq_cases():
    """(x, scale, zero point or None, attrs) for per-tensor, per-axis and blocked layouts."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 6, 5)) * 40).astype(np.float32)
    x.flat[:6] = [0.5, 1.5, 2.5, -0.5, -2.5, 1e6]  # ties round to even; saturation
    yield "per_tensor", x, np.array(0.5, np.float32), {}
    yield "per_axis", x, rng.uniform(0.1, 2.0, 6).astype(np.float32), {"axis": 1}
    yield "per_axis_last", x, rng.uniform(0.1, 2.0, 5).astype(np.float32), {"axis": -1}
    yield "blocked", x, rng.uniform(0.1, 2.0, (2, 2, 5)).astype(np.float32), {"axis": 1, "block_size": 4}
    yield "blocked_last", x, rng.uniform(0.1, 2.0, (2, 6, 3)).astype(np.float32), {"axis": 2, "block_size": 2}


def _zero_point(scale, dtype, rng):
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -20), min(info.max, 20) + 1, scale.shape).astype(dtype)


def _check_against_reference_and_ort(model, feeds, what, ort_too=True):
    got = _kiln(model, feeds)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    _same_values(got, want, what + " vs reference")
    if ort_too:
        got_ort = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        _same_values(got, got_ort, what + " vs onnxruntime")
    return got


@pytest.mark.parametrize("dtype", INT_TYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", list(_qdq_cases()), ids=lambda c: c[0])
def test_quantize_and_dequantize_integers(case, dtype):
    name, x, scale, attrs = case
    zero = _zero_point(scale, dtype, np.random.default_rng(5))
    quantize = _model("QuantizeLinear", [("x", x), ("s", scale), ("z", zero)], NP_TO_ONNX[np.dtype(dtype)], **attrs)
    q = _check_against_reference_and_ort(quantize, {"x": x, "s": scale, "z": zero}, f"Q {name} {dtype}")
    dequantize = _model("DequantizeLinear", [("q", q), ("s", scale), ("z", zero)], TensorProto.FLOAT, **attrs)
    _check_against_reference_and_ort(dequantize, {"q": q, "s": scale, "z": zero}, f"DQ {name} {dtype}")


@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("elem", list(FLOAT8), ids=F8_IDS)
@pytest.mark.parametrize("case", list(_qdq_cases())[:4], ids=lambda c: c[0])
def test_quantize_and_dequantize_float8(case, elem, saturate):
    name, x, scale, attrs = case
    x = np.concatenate([x.ravel()[:-4], [np.inf, -np.inf, np.nan, 3e5]]).astype(np.float32).reshape(x.shape)
    quantize = _model("QuantizeLinear", [("x", x), ("s", scale)], elem, output_dtype=elem, saturate=saturate,
                      **attrs)
    q = _check_against_reference_and_ort(quantize, {"x": x, "s": scale}, f"Q {name} {elem}", ort_too=False)
    dequantize = _model("DequantizeLinear", [("q", q), ("s", scale)], TensorProto.FLOAT, **attrs)
    _check_against_reference_and_ort(dequantize, {"q": q, "s": scale}, f"DQ {name} {elem}", ort_too=False)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_scales_divide_and_multiply_in_their_own_type(dtype):
    x = (np.random.default_rng(1).standard_normal(64) * 30).astype(dtype)
    scale = np.array(0.37, dtype)
    zero = np.array(3, np.int8)
    quantize = _model("QuantizeLinear", [("x", x), ("s", scale), ("z", zero)], TensorProto.INT8)
    q = _check_against_reference_and_ort(quantize, {"x": x, "s": scale, "z": zero}, "Q half",
                                         ort_too=dtype == np.float16)
    dequantize = _model("DequantizeLinear", [("q", q), ("s", scale), ("z", zero)], NP_TO_ONNX[np.dtype(dtype)])
    got = _kiln(dequantize, {"q": q, "s": scale, "z": zero})
    want = ReferenceEvaluator(dequantize).run(None, {"q": q, "s": scale, "z": zero})[0]
    assert got.dtype == np.uint16 if dtype != np.float16 else got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_opset10_quantize_defaults_to_uint8_without_a_zero_point():
    x = np.array([-1.0, 0.0, 1.49, 1.5, 2.5, 300.0], np.float32)
    scale = np.array(1.0, np.float32)
    model = _model("QuantizeLinear", [("x", x), ("s", scale)], TensorProto.UINT8, opset=10)
    got = _check_against_reference_and_ort(model, {"x": x, "s": scale}, "Q opset 10")
    np.testing.assert_array_equal(got, np.array([0, 0, 1, 2, 2, 255], np.uint8))


def _build_error(model):
    with pytest.raises(kiln.KilnError) as error:
        kiln.build_onnx(model, target="cpu")
    return str(error.value)


def test_errors_name_the_node_and_attribute():
    x = np.zeros((2, 6), np.float32)
    message = _build_error(_model("QuantizeLinear", [("x", x), ("s", np.ones(5, np.float32))],
                                  TensorProto.UINT8, axis=1))
    assert "the_node" in message and "per-axis scale" in message and "axis 1" in message
    message = _build_error(_model("QuantizeLinear", [("x", x), ("s", np.ones(6, np.float32))],
                                  TensorProto.UINT8, axis=2))
    assert "the_node" in message and "attribute 'axis'" in message
    message = _build_error(_model("QuantizeLinear", [("x", x), ("s", np.ones((2, 3), np.float32))],
                                  TensorProto.UINT8, axis=1, block_size=4))
    assert "the_node" in message and "block_size 4" in message
    message = _build_error(_model("QuantizeLinear", [("x", x), ("s", np.ones((), np.float32))],
                                  TensorProto.FLOAT6E2M3, output_dtype=TensorProto.FLOAT6E2M3))
    assert "the_node" in message and "attribute 'output_dtype'" in message
    message = _build_error(_model("QuantizeLinear", [("x", x), ("s", np.ones((), np.float32)),
                                                     ("z", np.zeros((), np.int8))],
                                  TensorProto.UINT8, output_dtype=TensorProto.UINT8))
    assert "the_node" in message and "attribute 'output_dtype'" in message and "int8" in message
    message = _build_error(_model("Cast", [("x", x)], TensorProto.FLOAT8E5M2, to=TensorProto.FLOAT8E5M2,
                                  saturate=2))
    assert "the_node" in message and "attribute 'saturate'" in message


@pytest.mark.parametrize("op", ["QuantizeLinear", "DequantizeLinear", "QLinearMatMul"])
@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")], ids=["zero", "negative", "nan", "inf"])
def test_a_scale_in_the_graph_must_be_finite_and_positive(op, scale):
    # A scale the build knows (an initializer) that is zero, negative or not finite describes no
    # quantization: the build refuses it naming the node, the input and the element.
    from onnx import numpy_helper

    per_channel = np.array([0.5, scale, 2.0], np.float32)
    zero = numpy_helper.from_array(np.zeros(3, np.int8), "zero")
    if op == "QLinearMatMul":
        one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
        zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
        bad = numpy_helper.from_array(per_channel, "bad")
        node = helper.make_node(op, ["a", "one", "zp", "b", "bad", "zero", "one", "zp"], ["y"], name="the_node")
        inputs = [helper.make_tensor_value_info("a", TensorProto.INT8, [2, 4]),
                  helper.make_tensor_value_info("b", TensorProto.INT8, [4, 3])]
        initializers, input_name, element = [one, zp, bad, zero], "input 4 (b_scale)", "at element 1"
    else:
        quantize = op == "QuantizeLinear"
        bad = numpy_helper.from_array(per_channel, "bad")
        node = helper.make_node(op, ["x", "bad", "zero"], ["y"], name="the_node", axis=1)
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT if quantize else TensorProto.INT8, [2, 3])]
        initializers = [bad, zero]
        input_name, element = f"input 1 ({'y' if quantize else 'x'}_scale)", "at element 1"
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(kiln.InvalidArgumentError) as error:
        kiln.build_onnx(model, target="cpu")
    message = str(error.value)
    assert "the_node" in message and input_name in message and element in message, message
    assert "must be finite and greater than zero" in message, message


def test_a_scale_given_at_run_time_is_used_as_given():
    # Only scales the build knows are checked: one fed as an input divides as given, and x / 0 is
    # an infinity that saturates to the range's ends (the ONNX reference casts it to int32 first,
    # which numpy leaves undefined, so it is not the judge here).
    x = np.array([-1.0, 1.0], np.float32)
    scale = np.array(0.0, np.float32)
    model = _model("QuantizeLinear", [("x", x), ("s", scale)], TensorProto.UINT8, opset=19)
    np.testing.assert_array_equal(_kiln(model, {"x": x, "s": scale}), np.array([0, 255], np.uint8))


def test_a_float8_zero_point_must_be_zero():
    x = np.ones(4, np.float32)
    zero = np.array(1.0, ml_dtypes.float8_e4m3fn)
    model = _model("QuantizeLinear", [("x", x), ("s", np.ones((), np.float32)), ("z", zero)],
                   TensorProto.FLOAT8E4M3FN)
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"the_node.*float8e4m3fn y_zero_point must be 0"):
        engine.run({"x": x, "s": np.ones((), np.float32), "z": zero})



def test_a_cuda_build_refuses_float8_layers_naming_layer_and_dtype():
    if not cuda_backend_present():
        pytest.skip("this kiln has no CUDA backend (or no NVRTC) to build cuda engines with")
    x = np.zeros(4, np.float32)
    model = _model("Cast", [("x", x)], TensorProto.FLOAT8E4M3FN, to=TensorProto.FLOAT8E4M3FN)
    with pytest.raises(kiln.UnsupportedError,
                       match=r"host layers are not allowed \(allow_host_layers\):\n  layer 'the_node' \(op 'Cast'\): output 0 'y' is float8e4m3fn; the cuda kernel takes"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)
