"""RoiAlign (opsets 10, 16, 22) and DeformConv (19, 22) on the CPU (no CUDA kernels), against ONNX's
reference evaluator and ONNX Runtime over more shapes, attributes and optional inputs than the
official backend cases; bad nodes are errors naming the node; a CUDA build refuses the layers by
name."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import kiln


def _model(op, inputs, opset, name="gap_node", **attrs):
    names = [k if v is not None else "" for k, v in inputs.items()]
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], name=name, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in inputs.items() if v is not None]
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name="y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _feeds(inputs):
    return {k: v for k, v in inputs.items() if v is not None}


def _run_kiln(model, inputs):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")).run(_feeds(inputs))["y"]


def _check(op, inputs, opset, with_ort=True, rtol=1e-5, atol=1e-5, **attrs):
    model = _model(op, inputs, opset, **attrs)
    got = _run_kiln(model, inputs)
    want = ReferenceEvaluator(model).run(None, _feeds(inputs))[0]
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    if with_ort:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got, session.run(None, _feeds(inputs))[0], rtol=1e-4, atol=1e-4)


# ---- RoiAlign ------------------------------------------------------------------------------------

def _rois(rng, count, height, width):
    x1 = rng.uniform(-2, width - 1, count)
    y1 = rng.uniform(-2, height - 1, count)
    return np.stack([x1, y1, x1 + rng.uniform(0.2, width, count), y1 + rng.uniform(0.2, height, count)],
                    axis=1)


@pytest.mark.parametrize("mode,transform,sampling_ratio,scale,dtype", [
    (m, t, s, sc, dt)
    for m, t, s, sc in itertools.product(("avg", "max"), ("half_pixel", "output_half_pixel"), (0, 1, 3), (1.0, 0.5))
    for dt in ((np.float32, np.float64) if s == 0 and sc == 1.0 else (np.float32,))])
def test_roi_align_matches_the_reference(mode, transform, sampling_ratio, scale, dtype):
    rng = np.random.default_rng(hash((mode, transform, sampling_ratio, scale)) % 2**32)
    x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
    rois = _rois(rng, 5, 9 / scale, 7 / scale).astype(dtype)
    inputs = {"x": x, "rois": rois, "batch_indices": rng.integers(0, 2, 5).astype(np.int64)}
    # ONNX Runtime's max mode differs from the reference on some regions (its own interpolation
    # order); the reference is the definition, so max mode compares with the reference only.
    _check("RoiAlign", inputs, 16, with_ort=(mode == "avg" and dtype == np.float32), mode=mode,
           coordinate_transformation_mode=transform, sampling_ratio=sampling_ratio, spatial_scale=scale,
           output_height=3, output_width=4)


def test_roi_align_opset_10_samples_as_output_half_pixel():
    rng = np.random.default_rng(10)
    inputs = {"x": rng.standard_normal((1, 2, 6, 6)).astype(np.float32),
              "rois": _rois(rng, 3, 6, 6).astype(np.float32), "batch_indices": np.zeros(3, np.int64)}
    got = _run_kiln(_model("RoiAlign", inputs, 10, output_height=2, output_width=2), inputs)
    want = ReferenceEvaluator(_model("RoiAlign", inputs, 16, output_height=2, output_width=2,
                                     coordinate_transformation_mode="output_half_pixel")).run(None, inputs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs,batch_indices,match", [
    ({"mode": "min"}, [0], r"attribute 'mode' must be \"avg\" or \"max\", got \"min\""),
    ({"coordinate_transformation_mode": "asymmetric"}, [0], "coordinate_transformation_mode"),
    ({"output_height": 0}, [0], "'output_height' must be >= 1, got 0"),
    ({"sampling_ratio": -1}, [0], "'sampling_ratio' must be >= 0"),
    ({}, [3], r"input 2 \(batch_indices\) \[0\] = 3 is outside \[0, 1\)"),
    ({}, [0, 0], r"input 1 \(rois\) has 1 regions but input 2 \(batch_indices\) has 2"),
])
def test_roi_align_bad_nodes_are_errors_naming_the_node(attrs, batch_indices, match):
    inputs = {"x": np.zeros((1, 1, 4, 4), np.float32), "rois": np.array([[0, 0, 2, 2]], np.float32),
              "batch_indices": np.array(batch_indices, np.int64)}
    with pytest.raises(kiln.KilnError, match="gap_node.*" + match):
        _run_kiln(_model("RoiAlign", inputs, 16, **attrs), inputs)


# ---- DeformConv ----------------------------------------------------------------------------------

@pytest.mark.parametrize("group,offset_group,with_bias,with_mask,stride,dilation,pad,dtype", [
    (1, 1, False, False, 1, 1, 0, np.float32),
    (1, 1, True, True, 1, 1, 1, np.float32),
    (2, 1, True, False, 2, 1, 1, np.float32),
    (1, 2, False, True, 1, 2, 2, np.float32),
    (2, 2, True, True, 2, 2, 1, np.float32),
    (1, 4, True, True, 1, 1, 1, np.float64),
])
def test_deform_conv_matches_the_reference(group, offset_group, with_bias, with_mask, stride, dilation, pad,
                                           dtype):
    rng = np.random.default_rng(group * 1000 + offset_group * 100 + stride * 10 + dilation + pad)
    n, c, h, w, oc, kh, kw = 2, 4, 7, 6, 4, 3, 2
    oh = (h + 2 * pad - (dilation * (kh - 1) + 1)) // stride + 1
    ow = (w + 2 * pad - (dilation * (kw - 1) + 1)) // stride + 1
    inputs = {
        "x": rng.standard_normal((n, c, h, w)).astype(dtype),
        "w": rng.standard_normal((oc, c // group, kh, kw)).astype(dtype),
        "offset": (rng.standard_normal((n, offset_group * 2 * kh * kw, oh, ow)) * 1.5).astype(dtype),
        "b": rng.standard_normal(oc).astype(dtype) if with_bias else None,
        "mask": rng.uniform(0, 1, (n, offset_group * kh * kw, oh, ow)).astype(dtype) if with_mask else None,
    }
    _check("DeformConv", inputs, 19, with_ort=False, rtol=1e-4, atol=1e-4, group=group,
           offset_group=offset_group, strides=[stride] * 2, dilations=[dilation] * 2, pads=[pad] * 4,
           kernel_shape=[kh, kw])


@pytest.mark.parametrize("change,match", [
    ({"offset": np.zeros((1, 6, 3, 3), np.float32)}, r"input 2 \(offset\) has 6 channels, expected"),
    ({"offset": np.zeros((1, 8, 2, 3), np.float32)}, r"input 2 \(offset\) has spatial dims"),
    ({"x": np.zeros((1, 2, 4), np.float32)}, r"kiln runs 2-D DeformConv only"),
    ({"b": np.zeros(3, np.float32)}, r"input 3 \(B\) must have shape \[2\]"),
])
def test_deform_conv_bad_nodes_are_errors_naming_the_node(change, match):
    inputs = {"x": np.zeros((1, 2, 4, 4), np.float32), "w": np.zeros((2, 2, 2, 2), np.float32),
              "offset": np.zeros((1, 8, 3, 3), np.float32), "b": None}
    inputs.update(change)
    with pytest.raises(kiln.KilnError, match="gap_node.*" + match):
        _run_kiln(_model("DeformConv", inputs, 19), inputs)


# ---- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,inputs,opset", [
    ("RoiAlign", {"x": np.zeros((1, 1, 4, 4), np.float32), "rois": np.zeros((1, 4), np.float32),
                  "batch_indices": np.zeros(1, np.int64)}, 16),
    ("DeformConv", {"x": np.zeros((1, 2, 4, 4), np.float32), "w": np.zeros((2, 2, 2, 2), np.float32),
                    "offset": np.zeros((1, 8, 3, 3), np.float32)}, 19),
])
def test_cuda_build_refuses_the_layer_by_name(op, inputs, opset):
    model = _model(op, inputs, opset)
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)
    except kiln.KilnError as error:
        assert f"host layers are not allowed (allow_host_layers):\n  layer 'gap_node' (op '{op}'): the cuda backend has no kernel" in str(error)
        return
    with pytest.raises(kiln.KilnError, match="built without CUDA"):
        kiln.Engine(engine)
    pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
