"""NaN through the fused epilogues (issue 11): the builder fuses Conv+Relu, Conv+Add+Relu,
MatMul+Add+Relu and Gemm+Relu into one layer whose epilogue applies the Relu. Relu(NaN) is NaN in
a standalone Relu (docs/ops.md), in PyTorch and in ONNX Runtime, so the fused layers must keep it
too: before the fix the CPU epilogues turned NaN into 0 and the demo model with one NaN pixel gave
finite logits.

CUDA engines run the same cases when this machine can build them (a GPU); otherwise those are
skipped."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import helper

import kiln
from kiln_testing import OpCase, assert_outputs_match, run_ort

NAN = np.float32(np.nan)


def _conv_relu(residual: bool) -> OpCase:
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    x[0, 1, 3, 4] = NAN
    consts = {"c_w": rng.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32),
              "c_b": rng.uniform(-1, 1, (4,)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "c_w", "c_b"], ["conv"], pads=[1, 1, 1, 1])]
    feeds = {"x": x}
    relu_input = "conv"
    if residual:
        r = rng.uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32)
        r[0, 2, 0, 0] = NAN  # a NaN that enters through the residual alone
        feeds["r"] = r
        nodes.append(helper.make_node("Add", ["conv", "r"], ["sum"]))
        relu_input = "sum"
    nodes.append(helper.make_node("Relu", [relu_input], ["y"]))
    return OpCase("conv_add_relu" if residual else "conv_relu", nodes, feeds, consts)


def _matmul_add_relu() -> OpCase:
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (2, 5, 6)).astype(np.float32)
    x[1, 2, 3] = NAN
    consts = {"c_w": rng.uniform(-1, 1, (6, 7)).astype(np.float32),
              "c_b": rng.uniform(-1, 1, (7,)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "c_w"], ["mm"]),
             helper.make_node("Add", ["mm", "c_b"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["y"])]
    return OpCase("matmul_add_relu", nodes, {"x": x}, consts)


def _gemm_relu() -> OpCase:
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
    x[2, 1] = NAN
    consts = {"c_w": rng.uniform(-1, 1, (7, 6)).astype(np.float32),
              "c_b": rng.uniform(-1, 1, (7,)).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "c_w", "c_b"], ["gemm"], transB=1),
             helper.make_node("Relu", ["gemm"], ["y"])]
    return OpCase("gemm_relu", nodes, {"x": x}, consts)


CASES = [_conv_relu(False), _conv_relu(True), _matmul_add_relu(), _gemm_relu()]


def _engine(model, target: str) -> kiln.Engine:
    try:
        return kiln.Engine(kiln.build_onnx(model, target=target))
    except (kiln.DeviceError, kiln.UnsupportedError) as e:
        if target == "cpu":
            raise
        pytest.skip(f"no CUDA engine on this machine: {e}")


@pytest.mark.parametrize("target", ["cpu", "cuda"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fused_relu_keeps_nan(case: OpCase, target: str):
    model = case.model()
    want = run_ort(model, case.feeds)
    assert np.isnan(want["y"]).any(), "the case must produce NaN in ONNX Runtime"
    engine = _engine(model, target)
    got = engine.run(case.feeds)
    # NaN exactly where ONNX Runtime has it (assert_allclose compares NaN positions), the rest close.
    assert_outputs_match(got, want, rtol=1e-4 if target == "cuda" else 1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_is_fused(case: OpCase):
    # The cases above test the fused epilogues only if the builder fuses the Relu into its layer.
    passes = kiln.Engine(kiln.build_onnx(case.model(), explain=True)).metadata["kiln_build"]["explain"]["passes"]
    fusions = sum(p["changes"] for p in passes if p["pass"] in ("conv_fusion", "matmul_fusion"))
    assert fusions >= 1, passes


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_demo_model_with_a_nan_pixel_returns_nan_logits(repo_dir, target):
    sys.path.insert(0, str(repo_dir))
    from models import resnet_mini

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = resnet_mini.export_onnx(Path(tmp) / "resnet_mini.onnx")
        model = onnx.load(path)
    x = resnet_mini.sample_input().numpy().copy()
    x[0, 1, 16, 16] = NAN
    want = run_ort(model, {"input": x})
    assert np.isnan(want["logits"]).all(), "ONNX Runtime: one NaN pixel reaches every logit"
    got = _engine(model, target).run({"input": x})
    assert np.isnan(got["logits"]).all(), f"kiln returned {got['logits']} where ONNX Runtime returns NaN"
