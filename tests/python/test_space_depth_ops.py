"""DepthToSpace and SpaceToDepth on the CPU backend: the conformance tuples of
cuda_cases_space_depth.py against ONNX Runtime (or, for dtypes ONNX Runtime's CPU provider lacks:
int32, int64, bool, against the ONNX definition in numpy), named errors for bad models, and
PyTorch's PixelShuffle / PixelUnshuffle exported with torch.onnx.export(dynamo=True) against eager
PyTorch.

torch 2.13's exporter writes nn.PixelShuffle as DepthToSpace(mode="CRD") and nn.PixelUnshuffle as
Reshape -> Transpose -> Reshape (no SpaceToDepth); the tests check the exported ops. Data movement
is exact: outputs must match bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import kiln
from cuda_cases_space_depth import CASES
from kiln_testing import case_from_tuple, run_kiln, run_ort

TUPLE_CASES = [case_from_tuple(entry) for entry in CASES]
ORT_DTYPES = (np.float32, np.float16, np.float64, np.uint8, np.int8)


def onnx_definition(op: str, x: np.ndarray, blocksize: int, mode: str = "DCR") -> np.ndarray:
    """The reshape/transpose sequences of the ONNX operator definitions."""
    n, c, h, w = x.shape
    b = blocksize
    if op == "SpaceToDepth":
        t = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
        return t.reshape(n, c * b * b, h // b, w // b)
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


def attrs_of(case):
    node = case.nodes[0]
    return node.op_type, {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("case", TUPLE_CASES, ids=[c.id for c in TUPLE_CASES])
def test_matches_onnxruntime_or_definition(case):
    model = case.model()
    got = run_kiln(model, case.feeds)["y"]
    x = case.feeds["x"]
    op, attrs = attrs_of(case)
    mode = attrs.get("mode", b"DCR")
    want_def = onnx_definition(op, x, attrs["blocksize"], mode.decode() if isinstance(mode, bytes) else mode)
    assert got.dtype == x.dtype and got.shape == want_def.shape
    np.testing.assert_array_equal(got, want_def)
    if x.dtype.type in ORT_DTYPES:
        np.testing.assert_array_equal(got, run_ort(model, case.feeds)["y"])


def test_tuples_cover_modes_and_dtypes():
    seen = {(e[1], e[3].get("mode", "DCR"), e[2][0][1]) for e in CASES}
    for op, mode in [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", "DCR")]:
        assert {d for o, m, d in seen if (o, m) == (op, mode)} >= {"float32"}
    dtypes = {d for _, _, d in seen}
    assert {"float32", "float16", "int64", "int32", "uint8", "bool"} <= dtypes


# ---- bad models -------------------------------------------------------------------------------

def space_model(op, shape, attrs):
    node = helper.make_node(op, ["x"], ["y"], name="space_node", **attrs)
    graph = helper.make_graph(
        [node], "space", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10
    return model.SerializeToString()


@pytest.mark.parametrize("op, shape, attrs, fragment", [
    ("DepthToSpace", [1, 8, 4, 4], {"blocksize": 3}, "is not divisible by 9"),
    ("DepthToSpace", [1, 12, 4, 4], {"blocksize": 2, "mode": "XYZ"}, "mode"),
    ("DepthToSpace", [8, 4, 4], {"blocksize": 2}, "rank 4"),
    ("DepthToSpace", [1, 8, 4, 4], {"blocksize": 0}, "blocksize"),
    ("DepthToSpace", [1, 8, 4, 4], {}, "missing required attribute 'blocksize'"),
    ("SpaceToDepth", [1, 3, 5, 4], {"blocksize": 2}, "height H"),
    ("SpaceToDepth", [1, 3, 4, 6], {"blocksize": 4}, "width W"),
    ("SpaceToDepth", [1, 3, 4, 4, 4], {"blocksize": 2}, "rank 4"),
    ("SpaceToDepth", [1, 3, 4, 4], {"blocksize": -1}, "blocksize"),
])
def test_bad_models_fail_with_named_errors(op, shape, attrs, fragment):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(space_model(op, shape, attrs))
    assert "space_node" in str(info.value) and fragment in str(info.value), str(info.value)


# ---- PyTorch modules exported with dynamo=True -------------------------------------------------

def check_module(module, x, expected_ops, rtol=0.0, atol=0.0):
    model = torch.onnx.export(module.eval(), (x,), dynamo=True, verbose=False).model_proto
    ops = {n.op_type for n in model.graph.node}
    assert expected_ops <= ops, f"exported ops {sorted(ops)}"
    got = run_kiln(model.SerializeToString(), {model.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=rtol, atol=atol)
    return ops


@pytest.mark.parametrize("factor, shape", [(2, (2, 8, 5, 7)), (3, (1, 27, 4, 4)),
                                           (4, (1, 48, 16, 12))])
def test_torch_pixel_shuffle(factor, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(factor))
    check_module(torch.nn.PixelShuffle(factor), x, {"DepthToSpace"})


@pytest.mark.parametrize("factor, shape", [(2, (2, 3, 8, 6)), (3, (1, 2, 9, 12))])
def test_torch_pixel_unshuffle(factor, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(factor))
    ops = check_module(torch.nn.PixelUnshuffle(factor), x, set())
    assert "SpaceToDepth" not in ops  # torch writes Reshape/Transpose/Reshape


class SuperResolution(torch.nn.Module):
    """ESPCN-style head: Conv -> Tanh -> Conv to r^2 channels -> PixelShuffle(r)."""

    def __init__(self, r=3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(16, r * r, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(r)

    def forward(self, x):
        return self.shuffle(self.conv2(torch.tanh(self.conv1(x))))


def test_torch_super_resolution_net():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 20, 24)
    check_module(SuperResolution(), x, {"DepthToSpace", "Conv"}, rtol=1e-5, atol=1e-5)
