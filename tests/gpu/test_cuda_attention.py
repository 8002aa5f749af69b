"""Attention fusion on CUDA: the chain torch.onnx exports for scaled dot-product attention
(projections transposed to heads, Q and Kᵀ scaled, Kᵀ as Reshape/Transpose/Reshape, additive mask,
Softmax, the IsNaN/Where guard, P·V, transpose back) becomes one FusedAttention layer in fp16/bf16
CUDA engines, run by the tensor-core kernel. Its output must match the CPU engine (float32, the
unfused reference): max |cuda - cpu| <= 2e-2 * max(1, max |cpu|) for fp16 and 6e-2 for bf16,
rows whose keys are all masked included (they come out as zeros, as the guard makes them).
Then attention as users export it (tests/python/attention_forms.py: SDPA through both exporters
and kiln.compile, timm, nn.MultiheadAttention, explicit Mul/Div, bmm, ONNX's Attention node, a
ViT-B/16-sized timm block): one FusedAttention layer each, within 2e-2 of eager PyTorch and of
the float32 CPU engine."""

from __future__ import annotations


import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from engine_layers import engine_layers

OPSET = 20


class _Graph:
    """Collects initializers and nodes of a float32 ONNX model (each node named after its output)."""

    def __init__(self):
        self.inits, self.nodes = [], []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, out, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def model(self, name, inputs, output) -> bytes:
        outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def _attention_model(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled_key="reshape"):
    """ONNX model with inputs q [B,Sq,H*D], k [B,Sk,H*D], v [B,Sk,H*Dv] and an additive mask."""
    g = _Graph()
    const, node = g.const, g.node

    root = float(dim) ** -0.25
    q = node("Reshape", ["q", const("q_shape", np.array([batch, seq_q, heads, dim], np.int64))], "q4")
    k = node("Reshape", ["k", const("k_shape", np.array([batch, seq_k, heads, dim], np.int64))], "k4")
    v = node("Reshape", ["v", const("v_shape", np.array([batch, seq_k, heads, value_dim], np.int64))], "v4")
    qt = node("Transpose", [q], "qt", perm=[0, 2, 1, 3])
    kt = node("Transpose", [k], "kt", perm=[0, 2, 1, 3])
    vt = node("Transpose", [v], "vt", perm=[0, 2, 1, 3])
    if spelled_key == "reshape":
        flat = node("Reshape", [kt, const("flat", np.array([batch * heads, seq_k, dim], np.int64))], "kflat")
        swapped = node("Transpose", [flat], "kswap", perm=[0, 2, 1])
        key_t = node("Reshape", [swapped, const("back", np.array([batch, heads, dim, seq_k], np.int64))], "key_t")
    else:
        key_t = node("Transpose", [kt], "key_t", perm=[0, 1, 3, 2])
    scale = const("scale", np.array(root, np.float32))
    qs = node("Mul", [qt, scale], "qs")
    ks = node("Mul", [key_t, scale], "ks")
    scores = node("MatMul", [qs, ks], "scores")
    masked = node("Add", [scores, "mask"], "masked") if mask_shape is not None else scores
    probs = node("Softmax", [masked], "probs", axis=-1)
    nan = node("IsNaN", [probs], "nan")
    guarded = node("Where", [nan, const("zero", np.array(0.0, np.float32)), probs], "guarded")
    context = node("MatMul", [guarded, vt], "context")
    out = node("Transpose", [context], "context_t", perm=[0, 2, 1, 3])
    y = node("Reshape", [out, const("y_shape", np.array([batch, seq_q, heads * value_dim], np.int64))], "y")
    inputs = [
        helper.make_tensor_value_info("q", TensorProto.FLOAT, [batch, seq_q, heads * dim]),
        helper.make_tensor_value_info("k", TensorProto.FLOAT, [batch, seq_k, heads * dim]),
        helper.make_tensor_value_info("v", TensorProto.FLOAT, [batch, seq_k, heads * value_dim]),
    ]
    if mask_shape is not None:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, list(mask_shape)))
    return g.model("attention", inputs, y)


def _feeds(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, seed=3):
    rng = np.random.default_rng(seed)
    feeds = {
        "q": rng.standard_normal((batch, seq_q, heads * dim)).astype(np.float32),
        "k": rng.standard_normal((batch, seq_k, heads * dim)).astype(np.float32),
        "v": rng.standard_normal((batch, seq_k, heads * value_dim)).astype(np.float32),
    }
    if mask_shape is not None:
        # Padding-style mask: the last quarter of the keys masked, and every key of the last batch
        # when the mask has a batch dim.
        mask = np.zeros(mask_shape, np.float32)
        keys = mask_shape[-1]
        mask[..., keys - keys // 4:] = -np.inf
        if mask_shape[0] == batch > 1:
            mask[-1] = -np.inf
        feeds["mask"] = mask
    return feeds


CASES = {
    # name: (batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled_key)
    "bert_like": (4, 128, 128, 12, 64, 64, (4, 1, 1, 128), "reshape"),
    "odd_lengths": (2, 77, 77, 4, 64, 64, (2, 1, 77, 77), "reshape"),
    "cross_attention": (2, 50, 130, 2, 32, 32, (1, 1, 1, 130), "transpose"),
    "head_dim_128": (2, 64, 96, 2, 128, 128, None, "transpose"),
    "head_dim_80": (1, 33, 65, 3, 80, 48, (1, 3, 33, 65), "reshape"),
}



BLOCK_SHAPES = ["flash:w2", "flash:w4", "flash:w4p", "flash:w8"]


@pytest.mark.parametrize("block", BLOCK_SHAPES)
@pytest.mark.parametrize("name", list(CASES) + ["vit_length", "swin_window"])
def test_every_block_shape_matches_cpu(name, block, tmp_path, monkeypatch):
    """Each block shape of the kernel (a tactic builds time; KILN_ATTENTION_BLOCK forces one), on
    lengths that end mid-tile (77, 130, 197, 49) where warps and key steps past the end are
    skipped, is recorded in the engine and matches the float32 CPU engine."""
    cases = dict(CASES, vit_length=(2, 197, 197, 3, 64, 64, None, "transpose"),
                 swin_window=(8, 49, 49, 3, 32, 32, (1, 3, 49, 49), "transpose"))
    batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled = cases[name]
    model = _attention_model(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled)
    feeds = _feeds(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape)
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"].astype(np.float64)
    monkeypatch.setenv("KILN_ATTENTION_BLOCK", block)
    engine_bytes = kiln.build_onnx(model, target="cuda", precision="fp16")
    tactics = [layer["attributes"].get("kiln_tactic") for layer in engine_layers(engine_bytes, tmp_path)
               if layer["op"] == "FusedAttention"]
    assert tactics == [block]
    got = kiln.Engine(engine_bytes).run(feeds)["y"].astype(np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= 2e-2 * scale, f"{name} {block}: max abs error {err} (scale {scale})"
    monkeypatch.delenv("KILN_ATTENTION_BLOCK")  # the recorded shape runs again at load
    again = kiln.Engine(engine_bytes).run(feeds)["y"].astype(np.float64)
    assert np.array_equal(again, got)


def test_unknown_block_shape_is_an_error_naming_the_variable(monkeypatch):
    model = _attention_model(1, 16, 16, 1, 64, 64, None, "transpose")
    monkeypatch.setenv("KILN_ATTENTION_BLOCK", "w3")
    with pytest.raises(kiln.KilnError, match="KILN_ATTENTION_BLOCK.*flash:w2.*'w3'"):
        kiln.build_onnx(model, target="cuda", precision="fp16")


@pytest.mark.parametrize("precision,tolerance", [("fp16", 2e-2), ("bf16", 6e-2)])
@pytest.mark.parametrize("name", list(CASES))
def test_fused_attention_matches_cpu(name, precision, tolerance, tmp_path):
    batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled = CASES[name]
    model = _attention_model(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled)
    feeds = _feeds(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape)
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"].astype(np.float64)
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    ops = [layer["op"] for layer in engine_layers(engine_bytes, tmp_path, members=True)]
    assert ops.count("FusedAttention") == 1, ops
    for gone in ("Softmax", "IsNaN", "Where"):
        assert gone not in ops, ops
    got = kiln.Engine(engine_bytes).run(feeds)["y"].astype(np.float64)
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= tolerance * scale, f"{name} {precision}: max abs error {err} (scale {scale})"
    if mask_shape is not None and mask_shape[0] == batch > 1:
        assert np.all(got[-1] == 0.0), "rows with every key masked must come out as zeros"


def test_float32_engine_keeps_unfused_attention(tmp_path):
    # The tensor-core kernel is float16/bfloat16 only: float32 engines keep cuBLAS MatMuls.
    batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled = CASES["odd_lengths"]
    model = _attention_model(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape, spelled)
    feeds = _feeds(batch, seq_q, seq_k, heads, dim, value_dim, mask_shape)
    engine_bytes = kiln.build_onnx(model, target="cuda")
    assert "FusedAttention" not in [layer["op"] for layer in engine_layers(engine_bytes, tmp_path)]
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]
    got = kiln.Engine(engine_bytes).run(feeds)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _bert_layers_model(batch, seq, heads, dim, layers, seed=5):
    """BERT-like self-attention stack on x [B,S,E] (E = H*D): per layer three MatMul+Add
    projections of the same hidden state, each reshaped to heads and transposed, the exported
    attention chain, and an output projection (MatMul+Add) feeding the next layer."""
    rng = np.random.default_rng(seed)
    width = heads * dim
    g = _Graph()
    const, node = g.const, g.node

    def linear(prefix, x):
        w = const(f"{prefix}_w", (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32))
        b = const(f"{prefix}_b", (0.1 * rng.standard_normal(width)).astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{prefix}_mm"), b], f"{prefix}_out")

    heads_shape = const("heads_shape", np.array([batch, seq, heads, dim], np.int64))
    flat_shape = const("flat_shape", np.array([batch * heads, seq, dim], np.int64))
    back_shape = const("back_shape", np.array([batch, heads, dim, seq], np.int64))
    out_shape = const("out_shape", np.array([batch, seq, width], np.int64))
    scale = const("scale", np.array(float(dim) ** -0.25, np.float32))
    zero = const("zero", np.array(0.0, np.float32))
    x = "x"
    for layer in range(layers):
        p = f"l{layer}"
        q, k, v = (node("Transpose", [node("Reshape", [linear(f"{p}_{t}", x), heads_shape], f"{p}_{t}4")],
                        f"{p}_{t}t", perm=[0, 2, 1, 3]) for t in "qkv")
        flat = node("Reshape", [k, flat_shape], f"{p}_kflat")
        key_t = node("Reshape", [node("Transpose", [flat], f"{p}_kswap", perm=[0, 2, 1]), back_shape], f"{p}_key_t")
        scores = node("MatMul", [node("Mul", [q, scale], f"{p}_qs"), node("Mul", [key_t, scale], f"{p}_ks")],
                      f"{p}_scores")
        probs = node("Softmax", [node("Add", [scores, "mask"], f"{p}_masked")], f"{p}_probs", axis=-1)
        guarded = node("Where", [node("IsNaN", [probs], f"{p}_nan"), zero, probs], f"{p}_guarded")
        context = node("Transpose", [node("MatMul", [guarded, v], f"{p}_context")], f"{p}_context_t",
                       perm=[0, 2, 1, 3])
        x = linear(f"{p}_o", node("Reshape", [context, out_shape], f"{p}_merged"))
    y = node("Identity", [x], "y")
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, seq, width]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1, 1, seq]),
    ]
    return g.model("bert_layers", inputs, y)


@pytest.mark.parametrize("precision,tolerance", [("fp16", 2e-2), ("bf16", 6e-2)])
def test_qkv_projections_packed_into_one_gemm(precision, tolerance, tmp_path):
    # QkvPacking: each layer's Q, K and V projections become one MatMul [E, 3E] with its bias in
    # the GEMM epilogue, and FusedAttention reads its [B, S, 3, H, D] output in place.
    batch, seq, heads, dim, layers = 2, 128, 12, 64, 2
    width = heads * dim
    model = _bert_layers_model(batch, seq, heads, dim, layers)
    rng = np.random.default_rng(7)
    mask = np.zeros((batch, 1, 1, seq), np.float32)
    mask[0, ..., seq - seq // 4:] = -np.inf  # padding of batch 0's last quarter
    feeds = {"x": rng.standard_normal((batch, seq, width)).astype(np.float32), "mask": mask}
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"].astype(np.float64)
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    layer_list = engine_layers(engine_bytes, tmp_path, members=True)
    ops = [layer["op"] for layer in layer_list]
    assert ops.count("FusedAttention") == layers, ops
    assert ops.count("MatMul") == 2 * layers, ops  # QKV and the output projection per layer
    for gone in ("Add", "Softmax", "Where"):
        assert gone not in ops, ops  # biases live in the GEMM epilogues
    qkv_gemms = [layer for layer in layer_list
                 if layer["op"] == "MatMul" and layer["inputs"][1]["shape"] == [width, 3 * width]]
    assert len(qkv_gemms) == layers, [layer["inputs"] for layer in layer_list if layer["op"] == "MatMul"]
    for gemm in qkv_gemms:
        assert len(gemm["inputs"]) == 3 and gemm["inputs"][2]["shape"] == [3 * width], gemm["inputs"]
    for attention in (layer for layer in layer_list if layer["op"] == "FusedAttention"):
        assert attention["attributes"].get("qkv_packed") == 1, attention["attributes"]
        assert attention["inputs"][0]["shape"] == [batch, seq, 3, heads, dim], attention["inputs"]
        assert attention["inputs"][1] is None and attention["inputs"][2] is None, attention["inputs"]
        assert attention["inputs"][3]["shape"] == [batch, 1, 1, seq], attention["inputs"]
    got = kiln.Engine(engine_bytes).run(feeds)["y"].astype(np.float64)
    assert got.shape == want.shape == (batch, seq, width)
    assert np.isfinite(got).all()
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= tolerance * scale, f"{precision}: max abs error {err} (scale {scale})"


# ---- attention as users export it (tests/python/attention_forms.py) ---------------------------
#
# Each form must build into exactly one FusedAttention layer in an fp16 CUDA engine and match
# eager PyTorch (float32) and the float32 CPU engine (unfused) within 2e-2 of the output's scale.
# The CPU side of the same forms (tests/python/test_attention_forms.py) runs in `make test`.

from attention_forms import (FORMS, TimmAttention, export, feeds, form_id,  # noqa: E402
                             onnx_attention_model, relative_to_scale)


def _cuda_and_cpu(model_bytes: bytes, values: dict, tmp_path):
    engine_bytes = kiln.build_onnx(model_bytes, target="cuda", precision="fp16")
    layers = engine_layers(engine_bytes, tmp_path, members=True)
    got = next(iter(kiln.Engine(engine_bytes).run(values).values()))
    cpu = next(iter(kiln.Engine(kiln.build_onnx(model_bytes, target="cpu")).run(values).values()))
    return layers, got, cpu


@pytest.mark.parametrize("form", FORMS, ids=form_id)
def test_exported_form_runs_as_fused_attention(form, tmp_path):
    model, inputs, want = export(form)
    layers, got, cpu = _cuda_and_cpu(model.SerializeToString(), feeds(model, inputs), tmp_path)
    ops = [layer["op"] for layer in layers]
    assert ops.count("FusedAttention") == 1, ops
    assert "Softmax" not in ops, ops
    assert got.shape == want.shape and np.isfinite(got).all()
    assert relative_to_scale(got, want) <= 2e-2
    assert relative_to_scale(got, cpu) <= 2e-2


@pytest.mark.parametrize("rank,causal,bool_mask", [(3, True, True), (4, False, False)])
def test_onnx_attention_node_runs_as_fused_attention(rank, causal, bool_mask, tmp_path):
    model, values = onnx_attention_model(rank, causal, bool_mask)
    layers, got, cpu = _cuda_and_cpu(model, values, tmp_path)  # cpu: the Attention kernel
    ops = [layer["op"] for layer in layers]
    assert ops.count("FusedAttention") == 1, ops
    assert "Attention" not in ops, ops
    assert relative_to_scale(got, cpu) <= 2e-2
    if bool_mask:
        assert np.all(got[:, 1] == 0.0)  # the query with no key


def test_vit_sized_timm_attention_reads_packed_qkv(tmp_path):
    # ViT-B/16's attention shapes through timm's SDPA form (the case that missed the fused path:
    # 0.37x torch.compile at batch 32): 197 tokens, 12 heads of 64, one packed QKV GEMM.
    import torch

    module = TimmAttention(width=768, heads=12).eval()
    x = torch.randn(32, 197, 768, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = module(x).numpy()
    model = torch.onnx.export(module, (x,), dynamo=True, verbose=False).model_proto
    layers, got, _ = _cuda_and_cpu(model.SerializeToString(), {model.graph.input[0].name: x.numpy()},
                                   tmp_path)
    attention = [layer for layer in layers if layer["op"] == "FusedAttention"]
    assert len(attention) == 1, [layer["op"] for layer in layers]
    assert attention[0]["attributes"].get("qkv_packed") == 1, attention[0]["attributes"]
    assert attention[0]["inputs"][0]["shape"] == [32, 197, 3, 12, 64]
    assert relative_to_scale(got, want) <= 2e-2
