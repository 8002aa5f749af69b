"""Resize's cubic mode, antialias and tf_crop_and_resize on the CPU: against ONNX Runtime over the
coordinate transforms, scales and sizes (up and down), cubic_coeff_a and exclude_outside; against
eager PyTorch for F.interpolate's bicubic and antialiased modes exported with torch.onnx.export;
and the refusals name the node and the attribute (a cuda build refuses what its kernel lacks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_kiln, run_ort

TRANSFORMS = ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric"]
# Up, down (antialias widens the filter), a mix, and sizes (the scale is out / in).
TARGETS = [
    ([1, 1, 2.0, 1.5], None),
    ([1, 1, 0.6, 0.45], None),
    ([1, 1, 0.3, 1.0], None),
    (None, [2, 3, 4, 5]),
    (None, [2, 3, 13, 4]),
]


def resize_model(x_shape, scales=None, sizes=None, roi=None, opset=19, **attrs):
    """One Resize node named 'resize_node'; roi, scales and sizes are initializers."""
    inits, inputs = [], ["x", "", "", ""]
    for index, (name, value, dtype) in enumerate([("roi", roi, np.float32), ("scales", scales, np.float32),
                                                 ("sizes", sizes, np.int64)], start=1):
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, dtype), name))
            inputs[index] = name
    while inputs[-1] == "":
        inputs.pop()
    node = helper.make_node("Resize", inputs, ["y"], name="resize_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


X = np.random.default_rng(0).standard_normal((2, 3, 7, 9)).astype(np.float32)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("target", range(len(TARGETS)))
@pytest.mark.parametrize("a,exclude_outside", [(-0.75, 0), (-0.5, 1)])
@pytest.mark.parametrize("antialias", [0, 1])
def test_cubic_matches_onnxruntime(transform, target, a, exclude_outside, antialias):
    scales, sizes = TARGETS[target]
    model = resize_model(list(X.shape), scales, sizes, mode="cubic", coordinate_transformation_mode=transform,
                         cubic_coeff_a=a, exclude_outside=exclude_outside, antialias=antialias)
    want = run_ort(model, {"x": X})["y"]
    got = run_kiln(model, {"x": X}, target="cpu")["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("target", range(len(TARGETS)))
def test_antialiased_linear_matches_onnxruntime(transform, target):
    scales, sizes = TARGETS[target]
    model = resize_model(list(X.shape), scales, sizes, mode="linear", coordinate_transformation_mode=transform,
                         antialias=1)
    want = run_ort(model, {"x": X})["y"]
    got = run_kiln(model, {"x": X}, target="cpu")["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_antialias_changes_a_downscale_and_not_an_upscale():
    # The widened filter must actually be used: a 0.45 downscale averages more inputs.
    down = {aa: run_kiln(resize_model(list(X.shape), [1, 1, 0.45, 0.45], mode="linear", antialias=aa),
                         {"x": X}, target="cpu")["y"] for aa in (0, 1)}
    assert np.abs(down[0] - down[1]).max() > 1e-2
    up = {aa: run_kiln(resize_model(list(X.shape), [1, 1, 2.0, 2.0], mode="linear", antialias=aa),
                       {"x": X}, target="cpu")["y"] for aa in (0, 1)}
    np.testing.assert_allclose(up[0], up[1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("roi,extrapolation", [([0.1, 0.2, 0.9, 0.7], 0.0), ([-0.2, 0.3, 1.3, 0.6], 5.0),
                                               ([0.6, 0.8, 0.4, 0.2], -1.0)])
@pytest.mark.parametrize("sizes", [[4, 6], [1, 1], [9, 12]])
def test_tf_crop_and_resize_matches_onnxruntime(mode, roi, extrapolation, sizes):
    model = resize_model(list(X.shape), sizes=sizes, roi=roi, axes=[2, 3], mode=mode,
                         coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=extrapolation)
    want = run_ort(model, {"x": X})["y"]
    got = run_kiln(model, {"x": X}, target="cpu")["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_tf_crop_and_resize_extrapolates_outside_the_input():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    model = resize_model([1, 1, 4, 4], sizes=[1, 1, 3, 3], roi=[0, 0, -1.0, -1.0, 1, 1, -0.5, -0.5],
                         mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                         extrapolation_value=7.5)
    np.testing.assert_array_equal(run_kiln(model, {"x": x}, target="cpu")["y"], np.full((1, 1, 3, 3), 7.5, np.float32))


def _export(module, x):
    return torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto


class _Interpolate(torch.nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x):
        return torch.nn.functional.interpolate(x, **self.kwargs)


TORCH_CASES = [
    dict(scale_factor=2.0, mode="bicubic", align_corners=False),
    dict(scale_factor=2.0, mode="bicubic", align_corners=True),
    dict(size=(5, 4), mode="bicubic", align_corners=True),
    dict(size=(13, 6), mode="bicubic", align_corners=False),
    dict(size=(4, 5), mode="bilinear", antialias=True, align_corners=False),
    dict(size=(3, 4), mode="bicubic", antialias=True, align_corners=False),
    # The exporter writes a scale_factor as sizes, so eager PyTorch must take its scale from them too.
    dict(scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False, recompute_scale_factor=True),
]


@pytest.mark.parametrize("case", range(len(TORCH_CASES)))
def test_exported_interpolate_matches_eager_pytorch(case):
    x = torch.from_numpy(X)
    module = _Interpolate(**TORCH_CASES[case])
    want = module(x).numpy()
    model = _export(module, x)
    got = run_kiln(model.SerializeToString(), {model.graph.input[0].name: X}, target="cpu")
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-5)


def test_tf_crop_and_resize_with_scales_is_refused_naming_the_node():
    model = resize_model([1, 1, 4, 4], scales=[1, 1, 2, 2], roi=[0, 0, 0, 0, 1, 1, 1, 1], mode="linear",
                         coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(kiln.KilnError, match=r"resize_node.*'tf_crop_and_resize' with 'scales' is not supported"):
        kiln.build_onnx(model, target="cpu")


def test_tf_crop_and_resize_without_roi_is_an_error_naming_the_node():
    model = resize_model([1, 1, 4, 4], sizes=[1, 1, 2, 2], mode="linear",
                         coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(kiln.KilnError, match=r"resize_node.*needs input 1 \(roi\)"):
        kiln.build_onnx(model, target="cpu")


def test_bad_roi_length_and_antialiased_nearest_are_errors_naming_node_and_attribute():
    model = resize_model([1, 1, 4, 4], sizes=[1, 1, 2, 2], roi=[0, 1], mode="linear",
                         coordinate_transformation_mode="tf_crop_and_resize")
    with pytest.raises(kiln.KilnError, match=r"resize_node.*input 1 \(roi\) has 2 entries, expected 8"):
        kiln.build_onnx(model, target="cpu")
    with pytest.raises(kiln.KilnError, match=r"resize_node.*attribute 'antialias' = 1 applies to modes"):
        kiln.build_onnx(resize_model([1, 1, 4, 4], [1, 1, 0.5, 0.5], mode="nearest", antialias=1), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"resize_node.*attribute 'antialias' must be 0 or 1, got 2"):
        kiln.build_onnx(resize_model([1, 1, 4, 4], [1, 1, 0.5, 0.5], mode="linear", antialias=2), target="cpu")


def _runtime_has_cuda() -> bool:
    tiny = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]), opset_imports=[helper.make_opsetid("", 20)])
    try:
        kiln.Engine(kiln.build_onnx(tiny, target="cuda", cuda_arch=90, kernel_cache="off"))
    except kiln.KilnError as error:
        return "built without CUDA" not in str(error) and "NVRTC" not in str(error) and "nvrtc" not in str(error)
    return True


@pytest.mark.parametrize("attrs,named", [
    (dict(mode="cubic"), "attribute 'mode' = 'cubic'"),
    (dict(mode="linear", antialias=1), "attribute 'antialias' = 1"),
    (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
     "attribute 'coordinate_transformation_mode' = 'tf_crop_and_resize'"),
])
def test_a_cuda_build_refuses_what_the_cuda_kernel_lacks(attrs, named):
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend (or no NVRTC) to build cuda engines with")
    roi = [0, 0, 0.1, 0.1, 1, 1, 0.9, 0.9] if "coordinate_transformation_mode" in attrs else None
    model = resize_model([1, 1, 8, 8], sizes=[1, 1, 4, 4], roi=roi, **attrs)
    assert kiln.build_onnx(model, target="cpu")
    with pytest.raises(kiln.KilnError, match=rf"resize_node.*on cuda: {named} is not supported by the CUDA"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)
