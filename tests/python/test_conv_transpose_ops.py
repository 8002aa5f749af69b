"""ConvTranspose on the CPU backend: the conformance tuples of cuda_cases_conv_transpose.py
against ONNX Runtime (and, where ORT refuses a case ONNX defines, against PyTorch), bad
attributes rejected at build time with messages naming node, attribute, expected and got, and
PyTorch ConvTranspose1d/2d/3d modules exported with torch.onnx.export(dynamo=True) compared with
PyTorch.

Tolerances: float32 rtol 1e-5 / atol 1e-5 (kiln sums through SGEMM + col2im, ORT and PyTorch in
other orders); float16 tensors within 2e-3 of ORT's result relative to its largest magnitude
(both compute in float32 and round the output once)."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

import kiln
from cuda_cases_conv_transpose import CASES, ORT_REJECTS
from kiln_testing import (CONST_PREFIX, assert_outputs_match, case_from_tuple, relative_error,
                          run_kiln, run_ort)

ORT_CASES = [entry for entry in CASES if entry[0] not in ORT_REJECTS]
TORCH_CASES = [entry for entry in CASES if entry[0] in ORT_REJECTS]


def _all_inputs(case):
    values = dict(case.feeds)
    values.update(case.consts)
    return values


@pytest.mark.parametrize("entry", ORT_CASES, ids=[e[0] for e in ORT_CASES])
def test_matches_onnxruntime(entry):
    case = case_from_tuple(entry)
    model = case.model()
    want = run_ort(model, case.feeds)
    got = run_kiln(model, case.feeds)
    if want["y"].dtype == np.float16:
        assert got["y"].dtype == np.float16 and got["y"].shape == want["y"].shape
        assert relative_error(got["y"].astype(np.float64), want["y"].astype(np.float64)) < 2e-3
    else:
        assert_outputs_match(got, want, rtol=1e-5, atol=1e-5)


def _torch_conv_transpose(values: dict, attrs: dict, spatial: int) -> np.ndarray:
    """torch.nn.functional.conv_transposeNd for NOTSET-padded attributes."""
    x = torch.from_numpy(values["x"].astype(np.float32))
    w = torch.from_numpy(values[CONST_PREFIX + "w"].astype(np.float32))
    b = values.get(CONST_PREFIX + "b")
    pads = attrs.get("pads", [0] * 2 * spatial)
    assert pads[:spatial] == pads[spatial:], "torch takes symmetric padding only"
    fn = [None, torch.nn.functional.conv_transpose1d, torch.nn.functional.conv_transpose2d,
          torch.nn.functional.conv_transpose3d][spatial]
    return fn(x, w, None if b is None else torch.from_numpy(b.astype(np.float32)),
              stride=attrs.get("strides", 1), padding=pads[:spatial],
              output_padding=attrs.get("output_padding", 0), groups=attrs.get("group", 1),
              dilation=attrs.get("dilations", 1)).numpy()


@pytest.mark.parametrize("entry", TORCH_CASES, ids=[e[0] for e in TORCH_CASES])
def test_cases_onnxruntime_refuses_match_pytorch(entry):
    # output_padding >= stride but < dilation: ONNX (and PyTorch) define it, ORT refuses it.
    case = case_from_tuple(entry)
    model = case.model()
    got = run_kiln(model, case.feeds)["y"]
    want = _torch_conv_transpose(_all_inputs(case), entry[3], len(entry[2][0][2]) - 2)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- bad input ---------------------------------------------------------------------------------

def _bad_model(attrs: dict, x_shape=(1, 4, 5, 5), w_shape=(4, 2, 3, 3), bias_len=None,
               dtype=np.float32) -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(dtype), "w")]
    inputs = ["x", "w"]
    if bias_len is not None:
        inits.append(numpy_helper.from_array(np.zeros(bias_len, dtype), "b"))
        inputs.append("b")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up_bad", **attrs)
    graph = helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", elem, x_shape)],
                              [helper.make_tensor_value_info("y", elem, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model.SerializeToString()


BAD_CASES = [
    ("zero-stride", {"strides": [0, 1]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'strides'", ">= 1", "[0, 1]"]),
    ("negative-stride", {"strides": [2, -1]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'strides'", "[2, -1]"]),
    ("output-padding-too-large", {"strides": [2, 2], "output_padding": [0, 2]}, {},
     kiln.InvalidArgumentError,
     ["up_bad", "'output_padding'", "less than max(stride, dilation) = 2", "got 2"]),
    ("output-padding-without-stride", {"output_padding": [1, 0]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'output_padding'", "= 1", "got 1"]),
    ("channel-mismatch", {}, {"x_shape": (1, 3, 5, 5)}, kiln.InvalidArgumentError,
     ["up_bad", "X has 3 channels", "expects 4"]),
    ("group-not-dividing", {"group": 3}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'group' = 3", "4 channels"]),
    ("bias-length", {}, {"bias_len": 5}, kiln.InvalidArgumentError,
     ["up_bad", "B must have shape [2]", "[5]"]),
    ("bad-auto-pad", {"auto_pad": "SAME"}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'auto_pad'", "'SAME'"]),
    ("pads-eat-output", {"pads": [4, 4, 4, 4]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'pads'", "leave no output"]),
    ("output-shape-too-large", {"strides": [2, 2], "output_shape": [30, 11]}, {},
     kiln.InvalidArgumentError, ["up_bad", "'output_shape' entry 0", "at most 12", "got 30"]),
    ("output-shape-length", {"output_shape": [7, 7, 7]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'output_shape'", "2 entries", "got 3"]),
    ("kernel-shape-mismatch", {"kernel_shape": [2, 2]}, {}, kiln.InvalidArgumentError,
     ["up_bad", "'kernel_shape'", "does not match"]),
    ("four-spatial-dims", {}, {"x_shape": (1, 2, 2, 2, 2, 2), "w_shape": (2, 1, 1, 1, 1, 1)},
     kiln.UnsupportedError, ["up_bad", "4 spatial dimensions", "1 to 3"]),
    ("double", {}, {"dtype": np.float64}, kiln.UnsupportedError, ["up_bad", "float64"]),
]


@pytest.mark.parametrize("attrs,kwargs,error,fragments", [c[1:] for c in BAD_CASES],
                         ids=[c[0] for c in BAD_CASES])
def test_bad_attributes_are_named_errors(attrs, kwargs, error, fragments):
    with pytest.raises(error) as info:
        kiln.build_onnx(_bad_model(attrs, **kwargs))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"'{fragment}' missing from: {message}"


# ---- PyTorch modules, exported with the dynamo exporter ----------------------------------------

def _export(module: nn.Module, example: torch.Tensor, tmp_path) -> onnx.ModelProto:
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                          opset_version=18, dynamo=True)
    return onnx.load(str(path))


def _seeded(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) - 0.5)
    return module.eval()


class UNetUp(nn.Module):
    """A UNet decoder step: upsample by ConvTranspose, concatenate the skip, convolve."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.fuse = nn.Conv2d(7, 4, 3, padding=1)

    def forward(self, x):
        skip = x
        x = torch.relu(self.down(x))
        x = self.up(x)
        return self.fuse(torch.cat([x, skip], dim=1))


class Generator(nn.Module):
    """A DCGAN-style generator head: k4 s2 p1 upsampling twice, with batch norm."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, x):
        return self.net(x)


TORCH_MODULES = {
    "1d_basic": (lambda: nn.ConvTranspose1d(4, 6, 3), (2, 4, 11)),
    "1d_stride2_outpad1_pad1": (
        lambda: nn.ConvTranspose1d(3, 5, 4, stride=2, padding=1, output_padding=1), (1, 3, 9)),
    "1d_stride3_gt_kernel2": (lambda: nn.ConvTranspose1d(3, 2, 2, stride=3), (2, 3, 6)),
    "2d_k3s2p1_outpad1": (
        lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1), (1, 6, 7, 5)),
    "2d_groups_dilation": (
        lambda: nn.ConvTranspose2d(6, 9, 3, stride=2, groups=3, dilation=2, padding=2),
        (2, 6, 5, 6)),
    "2d_depthwise_no_bias": (
        lambda: nn.ConvTranspose2d(8, 8, 3, stride=2, groups=8, bias=False), (1, 8, 6, 6)),
    "2d_stride_gt_kernel": (lambda: nn.ConvTranspose2d(4, 3, (2, 1), stride=(3, 2)),
                            (1, 4, 5, 4)),
    "2d_outpad_below_dilation": (
        lambda: nn.ConvTranspose2d(3, 2, 2, stride=1, dilation=3, output_padding=2), (1, 3, 5, 5)),
    "2d_rect_output_padding": (
        lambda: nn.ConvTranspose2d(4, 4, (3, 5), stride=(2, 3), padding=(1, 2),
                                   output_padding=(1, 2)), (1, 4, 6, 5)),
    "3d_k2s2": (lambda: nn.ConvTranspose3d(4, 3, 2, stride=2), (1, 4, 3, 4, 5)),
    "3d_groups_outpad": (
        lambda: nn.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (1, 4, 3, 3, 4)),
    "unet_up": (UNetUp, (2, 3, 16, 16)),
    "dcgan_generator": (Generator, (2, 16, 4, 4)),
}


@pytest.mark.parametrize("name", list(TORCH_MODULES))
def test_torch_module_matches_pytorch(name, tmp_path):
    factory, shape = TORCH_MODULES[name]
    module = _seeded(factory(), seed=len(name))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    onnx_model = _export(module, x, tmp_path)
    assert any(n.op_type == "ConvTranspose" for n in onnx_model.graph.node)
    got = run_kiln(onnx_model.SerializeToString(), {"x": x.numpy()})["y"]
    with torch.no_grad():
        want = module(x).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torch_module_float16(tmp_path):
    # A float16 module: float16 tensors in the graph, computed in float32 and rounded once.
    module = _seeded(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), seed=3)
    x = torch.rand((1, 8, 6, 6), generator=torch.Generator().manual_seed(2)) * 2 - 1
    onnx_model = _export(module.half(), x.half(), tmp_path)
    assert onnx_model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    got = run_kiln(onnx_model.SerializeToString(), {"x": x.half().numpy()})["y"]
    assert got.dtype == np.float16
    with torch.no_grad():
        want = module.float()(x.half().float()).numpy()
    assert got.shape == want.shape
    assert relative_error(got.astype(np.float64), want.astype(np.float64)) < 2e-3
