"""Col2Im (a CPU kernel) and CenterCropPad (expanded by the importer into Shape/Slice/Pad): against
ONNX Runtime over strides, dilations, pads, 1-D to 3-D blocks, crops, pads, both at once and axes;
Col2Im against eager PyTorch's F.fold exported with torch.onnx.export; errors name the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_kiln, run_ort


def col2im_model(x_shape, image, block, constant=True, **attrs):
    inits = [numpy_helper.from_array(np.array(image, np.int64), "image"),
             numpy_helper.from_array(np.array(block, np.int64), "block")] if constant else []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if not constant:
        inputs += [helper.make_tensor_value_info("image", TensorProto.INT64, [len(image)]),
                   helper.make_tensor_value_info("block", TensorProto.INT64, [len(block)])]
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], name="col2im_node", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def blocks(image, block, strides, dilations, pads):
    n = len(image)
    return int(np.prod([(image[i] + pads[i] + pads[i + n] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1
                        for i in range(n)]))


COL2IM_CASES = [
    ([5, 5], [1, 5], {}),
    ([5, 5], [3, 3], dict(strides=[2, 2])),
    ([5, 5], [1, 5], dict(pads=[0, 1, 0, 1])),
    ([6, 6], [2, 2], dict(dilations=[1, 5])),
    ([7, 6], [3, 2], dict(strides=[2, 1], dilations=[2, 1], pads=[1, 2, 0, 1])),
    ([3, 4, 5], [1, 2, 2], dict(strides=[1, 2, 1], pads=[0, 1, 0, 0, 0, 1])),
    ([9], [3], dict(strides=[2], pads=[1, 1])),
]


@pytest.mark.parametrize("case", range(len(COL2IM_CASES)))
@pytest.mark.parametrize("constant", [True, False])
def test_col2im_matches_onnxruntime(case, constant):
    image, block, attrs = COL2IM_CASES[case]
    n = len(image)
    count = blocks(image, block, attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n),
                   attrs.get("pads", [0] * (2 * n)))
    x = np.random.default_rng(case).standard_normal((2, 3 * int(np.prod(block)), count)).astype(np.float32)
    model = col2im_model(list(x.shape), image, block, constant, **attrs)
    feeds = {"x": x} if constant else {"x": x, "image": np.array(image, np.int64), "block": np.array(block, np.int64)}
    want = run_ort(model, feeds)["y"]
    got = run_kiln(model, feeds, target="cpu")["y"]
    assert got.shape == want.shape == (2, 3, *image)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class _Fold(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.fold(x, output_size=(5, 6), kernel_size=(2, 3), dilation=(2, 1), padding=(1, 0),
                                        stride=(1, 2))


def test_exported_fold_matches_eager_pytorch():
    count = blocks([5, 6], [2, 3], [1, 2], [2, 1], [1, 0, 1, 0])
    x = torch.randn(2, 4 * 6, count, generator=torch.Generator().manual_seed(0))
    model = torch.onnx.export(_Fold(), (x,), dynamo=True, verbose=False).model_proto
    assert [n.op_type for n in model.graph.node] == ["Col2Im"]
    got = run_kiln(model.SerializeToString(), {model.graph.input[0].name: x.numpy()}, target="cpu")
    np.testing.assert_allclose(next(iter(got.values())), _Fold()(x).numpy(), rtol=1e-5, atol=1e-6)


def test_col2im_errors_name_the_node():
    with pytest.raises(kiln.KilnError, match=r"col2im_node.*input 0 dim 2 is 7, expected 9"):
        kiln.build_onnx(col2im_model([1, 9, 7], [5, 5], [3, 3]), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"col2im_node.*input 0 dim 1 \(10\) is not divisible by prod\(block_shape\) = 9"):
        kiln.build_onnx(col2im_model([1, 10, 9], [5, 5], [3, 3]), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"col2im_node.*attribute 'strides' must have 2 entries"):
        kiln.build_onnx(col2im_model([1, 9, 9], [5, 5], [3, 3], strides=[1]), target="cpu")
    with pytest.raises(kiln.KilnError, match=r"col2im_node.*input 2 \(block_shape\) has 1 entries but input 1"):
        kiln.build_onnx(col2im_model([1, 9, 9], [5, 5], [3]), target="cpu")


def center_crop_pad_model(x_shape, target, constant=True, **attrs):
    inits = [numpy_helper.from_array(np.array(target, np.int64), "shape")] if constant else []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if not constant:
        inputs.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [len(target)]))
    node = helper.make_node("CenterCropPad", ["x", "shape"], ["y"], name="crop_pad_node", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


CROP_PAD_CASES = [
    ((20, 10, 3), [10, 7, 3], {}),      # crop, odd excess on axis 1
    ((10, 7, 3), [20, 10, 3], {}),      # pad, odd shortfall on axis 1
    ((20, 8, 3), [11, 13, 3], {}),      # crop one axis, pad another
    ((3, 20, 8), [9, 11], dict(axes=[1, 2])),
    ((20, 8, 3), [10, 9], dict(axes=[-3, -2])),
    ((4, 5, 6), [7, 2], dict(axes=[2, 0])),
    ((4, 5, 6), [4, 5, 6], {}),         # unchanged
]


@pytest.mark.parametrize("case", range(len(CROP_PAD_CASES)))
@pytest.mark.parametrize("constant", [True, False])
def test_center_crop_pad_matches_onnxruntime(case, constant):
    shape, target, attrs = CROP_PAD_CASES[case]
    x = np.random.default_rng(case).standard_normal(shape).astype(np.float32)
    model = center_crop_pad_model(list(shape), target, constant, **attrs)
    feeds = {"x": x} if constant else {"x": x, "shape": np.array(target, np.int64)}
    want = run_ort(model, feeds)["y"]
    got = run_kiln(model, feeds, target="cpu")["y"]
    np.testing.assert_array_equal(got, want)


def test_center_crop_pad_places_the_odd_element_as_onnx_does():
    x = np.arange(1, 6, dtype=np.float32)
    crop = run_kiln(center_crop_pad_model([5], [2]), {"x": x}, target="cpu")["y"]
    np.testing.assert_array_equal(crop, [2, 3])  # start at floor((5 - 2) / 2)
    pad = run_kiln(center_crop_pad_model([5], [8]), {"x": x}, target="cpu")["y"]
    np.testing.assert_array_equal(pad, [0, 1, 2, 3, 4, 5, 0, 0])  # floor(3 / 2) before, the rest after


def test_center_crop_pad_arity_error_names_the_node():
    node = helper.make_node("CenterCropPad", ["x"], ["y"], name="crop_pad_node")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(kiln.KilnError, match=r"crop_pad_node.*\(CenterCropPad\): takes 2 to 2 inputs, got 1"):
        kiln.build_onnx(model, target="cpu")
