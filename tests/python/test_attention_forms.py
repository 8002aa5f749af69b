"""Attention fusion by what attention computes: each form users export (attention_forms.py:
SDPA with and without masks, scale= and is_causal through both torch.onnx exporters and
kiln.compile's route, timm's packed qkv, nn.MultiheadAttention, explicit matmul/softmax/matmul
with Mul or Div, rank-3 bmm, ONNX's Attention node) must become exactly one FusedAttention layer
when built the way `--target cuda --fp16` builds (the builder's test hook runs those passes and
emits a CPU engine), with the attributes of its form; and the fused engine, run on the CPU
reference kernels, must match the unfused fp16 engine (max error <= 1e-2 of the output's scale)
and eager PyTorch in float32 (<= 2e-2)."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
import kiln_attention_preview as preview
from attention_forms import (FORMS, export, feeds, form_id, onnx_attention_model,
                             relative_to_scale)


def _single_output(engine_bytes: bytes, values: dict) -> np.ndarray:
    outputs = preview.run(engine_bytes, values)
    assert len(outputs) == 1, list(outputs)
    return next(iter(outputs.values()))


@pytest.mark.parametrize("form", FORMS, ids=form_id)
def test_exported_form_becomes_one_fused_attention(form):
    model, inputs, want = export(form)
    fused_bytes = preview.build(model, "fp16", "tensor_cores")
    ops = [layer["op"] for layer in preview.layers(fused_bytes)]
    assert ops.count("FusedAttention") == 1, ops
    assert "Softmax" not in ops, ops
    attributes = preview.fused_attention_layers(fused_bytes)[0]["attributes"]
    for key, value in form.attributes.items():
        if key == "scale":
            assert attributes[key] == pytest.approx(value, rel=1e-2), attributes
        else:
            assert attributes.get(key) == value, (key, attributes)

    unfused_bytes = preview.build(model, "fp16", "none")
    assert "FusedAttention" not in [layer["op"] for layer in preview.layers(unfused_bytes)]
    values = feeds(model, inputs)
    got = _single_output(fused_bytes, values)
    reference = _single_output(unfused_bytes, values)
    assert got.shape == reference.shape == want.shape
    assert relative_to_scale(got, reference) <= 1e-2
    assert relative_to_scale(got, want) <= 2e-2


@pytest.mark.parametrize("rank,causal,bool_mask", [(3, True, True), (4, False, False),
                                                   (4, True, False)])
def test_onnx_attention_node_fuses_and_matches_its_cpu_kernel(rank, causal, bool_mask):
    model, values = onnx_attention_model(rank, causal, bool_mask)
    want = kiln.Engine(kiln.build_onnx(model)).run(values)["Y"]  # the Attention CPU kernel
    fused_bytes = preview.build(model, "fp16", "tensor_cores")
    fused = preview.fused_attention_layers(fused_bytes)
    assert len(fused) == 1, [layer["op"] for layer in preview.layers(fused_bytes)]
    layout = "BSHD" if rank == 3 else "BHSD"
    assert fused[0]["attributes"]["q_layout"] == layout
    assert fused[0]["attributes"]["out_layout"] == layout
    assert fused[0]["attributes"]["scale"] == pytest.approx(DIM_SCALE, rel=1e-2)
    assert relative_to_scale(_single_output(fused_bytes, values), want) <= 1e-2
    lowered = _single_output(preview.build(model, "fp32", "lowered"), values)
    assert relative_to_scale(lowered, want) <= 1e-5
    if bool_mask:
        assert np.all(want[:, 1] == 0.0)  # the query with no key


DIM_SCALE = 32 ** -0.5


def test_float32_is_not_fused_for_tensor_cores_but_is_for_the_cpu_rules():
    form = next(f for f in FORMS if f.name == "timm" and f.exporter == "dynamo")
    model, inputs, want = export(form)
    assert not preview.fused_attention_layers(preview.build(model, "fp32", "tensor_cores"))
    engine = preview.build(model, "fp32", "any")
    assert len(preview.fused_attention_layers(engine)) == 1
    assert relative_to_scale(_single_output(engine, feeds(model, inputs)), want) <= 1e-5
