"""kiln::DeformConv (plugins/deform_conv/) against ONNX's reference implementation of DeformConv
(onnx.reference, opset 19) and ONNX Runtime: one-node models in domain "kiln", built with libkiln_plugins.so loaded,
on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln_plugins_testing import one_node_model, run_kiln, run_ort


def reference(inputs, attrs):
    from onnx.reference import ReferenceEvaluator

    model = one_node_model("DeformConv", inputs, ["Y"], attrs, domain="", opset=19)
    return ReferenceEvaluator(model).run(None, {k: v for k, v in inputs.items() if v is not None})[0]


def make_inputs(rng, n, c, h, w, oc, k, group, offset_group, stride, pad, dilation, with_bias, with_mask,
                dtype=np.float32):
    oh = (h + 2 * pad - (dilation * (k[0] - 1) + 1)) // stride + 1
    ow = (w + 2 * pad - (dilation * (k[1] - 1) + 1)) // stride + 1
    taps = k[0] * k[1]
    inputs = {
        "X": rng.standard_normal((n, c, h, w)).astype(dtype),
        "W": rng.standard_normal((oc, c // group, *k)).astype(dtype),
        # offsets up to two pixels, so some samples fall outside the image
        "offset": rng.uniform(-2, 2, (n, offset_group * taps * 2, oh, ow)).astype(dtype),
        "B": rng.standard_normal(oc).astype(dtype) if with_bias else None,
        "mask": rng.uniform(0, 1, (n, offset_group * taps, oh, ow)).astype(dtype) if with_mask else None,
    }
    if not with_mask:
        del inputs["mask"]
        if not with_bias:
            del inputs["B"]
    return inputs


CASES = [
    # n, c, h, w, oc, kernel, group, offset_group, stride, pad, dilation, bias, mask
    (1, 1, 5, 5, 1, (3, 3), 1, 1, 1, 0, 1, False, False),
    (2, 4, 6, 7, 6, (3, 3), 2, 2, 1, 1, 1, True, True),
    (1, 3, 7, 6, 2, (2, 3), 1, 3, 2, 1, 1, True, False),
    (1, 2, 8, 8, 4, (3, 3), 1, 1, 1, 2, 2, False, True),
    (1, 4, 5, 6, 4, (1, 1), 4, 2, 1, 0, 1, True, True),
]


@pytest.mark.parametrize("case", CASES)
def test_matches_onnx_reference(build_dir, case):
    n, c, h, w, oc, k, group, offset_group, stride, pad, dilation, bias, mask = case
    rng = np.random.default_rng(sum(case[:5]))
    inputs = make_inputs(rng, n, c, h, w, oc, k, group, offset_group, stride, pad, dilation, bias, mask)
    attrs = {"kernel_shape": list(k), "group": group, "offset_group": offset_group, "strides": [stride] * 2,
             "pads": [pad] * 4, "dilations": [dilation] * 2}
    want = reference(inputs, attrs)
    got = run_kiln(build_dir, "DeformConv", inputs, ["Y"], attrs)["Y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, run_ort("DeformConv", inputs, ["Y"], attrs)[0], rtol=1e-4, atol=1e-4)


def test_zero_offsets_without_mask_is_a_convolution(build_dir):
    # Checks the defaults (no kernel_shape, strides, pads, dilations) against a direct convolution.
    rng = np.random.default_rng(1)
    inputs = make_inputs(rng, 1, 2, 5, 6, 3, (3, 3), 1, 1, 1, 0, 1, True, False)
    inputs["offset"][:] = 0
    got = run_kiln(build_dir, "DeformConv", inputs, ["Y"], {})["Y"]
    x, wt, b = inputs["X"], inputs["W"], inputs["B"]
    want = np.zeros((1, 3, 3, 4), np.float32)
    for i in range(3):
        for j in range(4):
            want[0, :, i, j] = np.einsum("ckl,ockl->o", x[0, :, i:i + 3, j:j + 3], wt) + b
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_float16(build_dir):
    rng = np.random.default_rng(2)
    inputs = make_inputs(rng, 1, 2, 6, 6, 2, (3, 3), 1, 1, 1, 1, 1, True, True, np.float16)
    want = reference({k: v.astype(np.float32) for k, v in inputs.items()}, {"pads": [1] * 4})
    got = run_kiln(build_dir, "DeformConv", inputs, ["Y"], {"pads": [1] * 4})["Y"]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-2, atol=2e-2)


def test_empty_batch(build_dir):
    rng = np.random.default_rng(3)
    inputs = make_inputs(rng, 0, 2, 5, 5, 2, (3, 3), 1, 1, 1, 0, 1, False, False)
    got = run_kiln(build_dir, "DeformConv", inputs, ["Y"], {})["Y"]
    assert got.shape == (0, 2, 3, 3)


def test_inconsistent_shapes_are_refused(build_dir):
    rng = np.random.default_rng(4)
    inputs = make_inputs(rng, 1, 4, 5, 5, 2, (3, 3), 1, 1, 1, 0, 1, False, False)
    with pytest.raises(kiln.InvalidArgumentError, match="offset's dimension 1 and offset_group"):
        run_kiln(build_dir, "DeformConv", inputs, ["Y"], {"offset_group": 2})
    with pytest.raises(kiln.InvalidArgumentError, match="X has 4 channels but W .* with group 2 takes 8"):
        run_kiln(build_dir, "DeformConv", inputs, ["Y"], {"group": 2})


@pytest.mark.parametrize("use_mask", [0, 1])
def test_torchvision_deform_conv2d_takes_torchvision_arguments(build_dir, use_mask):
    # kiln::TorchvisionDeformConv2d: torchvision::deform_conv2d's order (input, weight, offset, mask,
    # bias) and int fields; with use_mask=0 the mask input is a placeholder and ignored.
    rng = np.random.default_rng(9 + use_mask)
    inputs = make_inputs(rng, 2, 4, 7, 6, 4, (3, 2), 2, 2, 2, 1, 1, True, True)
    attrs = {"kernel_shape": [3, 2], "group": 2, "offset_group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1],
             "dilations": [1, 1]}
    onnx_inputs = dict(inputs) if use_mask else {k: v for k, v in inputs.items() if k != "mask"}
    want = reference(onnx_inputs, attrs)
    mask = inputs["mask"] if use_mask else np.zeros((2, 1), np.float32)
    fields = {"stride_h": 2, "stride_w": 2, "pad_h": 1, "pad_w": 1, "dilation_h": 1, "dilation_w": 1, "groups": 2,
              "offset_groups": 2, "use_mask": use_mask}
    got = run_kiln(build_dir, "TorchvisionDeformConv2d", {"input": inputs["X"], "weight": inputs["W"],
                                                          "offset": inputs["offset"], "mask": mask,
                                                          "bias": inputs["B"]}, ["Y"], fields)["Y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
