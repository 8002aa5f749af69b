"""kiln.compile / save / load / torch.compile(backend="kiln") with CUDA engines (GPU machine).

Run by the lead on the GPU machine (tests/gpu/conftest.py fails the session when there is no
GPU; this file also skips itself, saying so, if imported without CUDA). Models: a ResNet-18
(torchvision, random weights) and a BERT-like encoder (token embedding + two post-norm encoder
layers with GELU and a padding mask), compiled with precision="fp16": the engines compute in
float16 and keep the module's float32 inputs and outputs.

Tolerances: fp16 engines against fp32 eager: |err| <= 0.05 + 0.05 * |ref| for ResNet logits
(scale ~1) and 0.03 + 0.03 * |ref| for the encoder (LayerNorm outputs, scale ~1); fp32 engines
(exact fp32 math) against eager with TF32 off: 1e-3, the spread of cuDNN/cuBLAS algorithms;
a loaded engine against the one it was saved from (fp16, possibly other algorithms): 5e-3.
"""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
                allow_module_level=True)

import kiln  # noqa: E402
import kiln.runtime  # noqa: E402

DEVICE = torch.device("cuda", 0)
REPO = Path(__file__).resolve().parents[2]


def _eager(model, *inputs):
    with torch.no_grad():
        return model(*inputs)


def _close(actual, expected, atol, rtol):
    if isinstance(expected, (tuple, list)):
        for a, e in zip(actual, expected):
            _close(a, e, atol, rtol)
        return
    assert actual.device == expected.device and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def _resnet():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=100).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.8, 1.2)
    return model.to(DEVICE)


class BertLike(nn.Module):
    def __init__(self, vocab=1000, dim=256, heads=4, layers=2, seq=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids, attention_mask):
        x = self.norm(self.embed(input_ids) + self.position)
        return self.encoder(x, src_key_padding_mask=attention_mask == 0)


def _bert():
    torch.manual_seed(0)
    return BertLike().eval().to(DEVICE)


def _bert_inputs(batch, seq=32):
    ids = torch.randint(0, 1000, (batch, seq), device=DEVICE)
    mask = torch.ones(batch, seq, dtype=torch.int64, device=DEVICE)
    mask[:, seq - 5:] = 0
    return ids, mask


class WithUnsupportedOp(nn.Module):
    """grid_sample becomes ONNX GridSample, which kiln runs on the CPU only (no CUDA kernel)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = F.grid_sample(y, torch.tanh(y[:, :2]).permute(0, 2, 3, 1), align_corners=False)
        return self.conv2(y).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def resnet_fp16():
    model = _resnet()
    compiled = kiln.compile(model, torch.randn(2, 3, 64, 64, device=DEVICE), precision="fp16",
                            dynamic_batch=(1, 4, 8))
    return model, compiled


@pytest.fixture(scope="module")
def bert_fp16():
    model = _bert()
    compiled = kiln.compile(model, _bert_inputs(2), precision="fp16", dynamic_batch=(1, 2, 8))
    return model, compiled


def test_resnet_fp16_matches_eager(resnet_fp16):
    model, compiled = resnet_fp16
    report = compiled.kiln_report
    assert report.target == "cuda" and report.fully_compiled, report
    assert report.engines[0].inputs == ["in_0: float32[-1, 3, 64, 64]"]
    for batch in (2, 5):
        x = torch.randn(batch, 3, 64, 64, device=DEVICE)
        out = compiled(x)
        assert out.device == DEVICE and out.dtype == torch.float32
        _close(out, _eager(model, x), atol=5e-2, rtol=5e-2)


def test_resnet_fp32_matches_eager_tightly(monkeypatch):
    # Eager convolutions default to TF32 on Hopper; the reference must be plain fp32 too.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model = _resnet()
    x = torch.randn(2, 3, 64, 64, device=DEVICE)
    compiled = kiln.compile(model, x)
    _close(compiled(x), _eager(model, x), atol=1e-3, rtol=1e-3)


def test_bert_like_fp16_matches_eager(bert_fp16):
    model, compiled = bert_fp16
    report = compiled.kiln_report
    # Attention is exported in its math form (matmuls + softmax), so the whole encoder runs in
    # one engine: no fused-attention op is left to PyTorch.
    assert report.fully_compiled and len(report.engines) == 1, report
    assert "int64" in report.engines[0].inputs[0]
    for batch in (2, 6):
        inputs = _bert_inputs(batch)
        _close(compiled(*inputs), _eager(model, *inputs), atol=3e-2, rtol=3e-2)


def test_half_module_keeps_half_bindings():
    model = _resnet().half()
    x = torch.randn(2, 3, 64, 64, device=DEVICE, dtype=torch.float16)
    compiled = kiln.compile(model, x, precision="fp16")
    assert compiled.kiln_report.engines[0].inputs == ["in_0: float16[2, 3, 64, 64]"]
    out = compiled(x)
    assert out.dtype == torch.float16
    _close(out, _eager(model, x), atol=5e-2, rtol=5e-2)


def test_unsupported_op_partitioned_on_cuda():
    torch.manual_seed(0)
    model = WithUnsupportedOp().eval().to(DEVICE)
    x = torch.randn(2, 3, 16, 16, device=DEVICE)
    compiled = kiln.compile(model, x, precision="fp16")
    report = compiled.kiln_report
    assert len(report.engines) == 2, report
    assert [f.op for f in report.fallbacks] == ["aten.grid_sampler_2d.default"]
    _close(compiled(x), _eager(model, x), atol=5e-2, rtol=5e-2)
    with pytest.raises(kiln.FullCompilationError, match="grid_sampler_2d"):
        kiln.compile(model, x, precision="fp16", require_full_compilation=True)


def test_cpu_input_to_cuda_engine_is_a_clear_error(resnet_fp16):
    _, compiled = resnet_fp16
    engine = compiled._kiln_engine_0
    assert engine.backend() == "cuda"
    with pytest.raises(RuntimeError, match="(?i)device|cuda|cpu"):
        torch.ops.kiln.execute_engine([torch.randn(2, 3, 64, 64)], engine)


@pytest.mark.parametrize("fmt", ["exported_program", "torchscript"])
def test_save_load_round_trip(resnet_fp16, tmp_path, fmt):
    model, compiled = resnet_fp16
    path = tmp_path / f"resnet.{fmt}"
    kiln.save(compiled, path, format=fmt)
    loaded = kiln.load(path)
    x = torch.randn(3, 3, 64, 64, device=DEVICE)
    out = loaded(x)
    # The same engine bytes; a new engine object may pick other cuDNN/cuBLASLt algorithms,
    # so fp16 rounding may differ in the last bits (fp16 eps ~1e-3 at scale 1).
    _close(out, compiled(x), atol=5e-3, rtol=5e-3)
    _close(out, _eager(model, x), atol=5e-2, rtol=5e-2)


def test_load_in_fresh_process(bert_fp16, tmp_path):
    model, compiled = bert_fp16
    paths = {fmt: tmp_path / f"bert.{fmt}" for fmt in ("exported_program", "torchscript")}
    for fmt, path in paths.items():
        kiln.save(compiled, path, format=fmt)
    inputs = _bert_inputs(4)
    torch.save({"inputs": [t.cpu() for t in inputs], "expected": compiled(*inputs).cpu()},
               tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import sys, torch, kiln
        data = torch.load({str(tmp_path / "io.pt")!r})
        inputs = [t.cuda() for t in data["inputs"]]
        for path in ({str(paths["exported_program"])!r}, {str(paths["torchscript"])!r}):
            out = kiln.load(path)(*inputs)
            torch.testing.assert_close(out.cpu(), data["expected"], atol=5e-3, rtol=5e-3)
        assert "onnx" not in sys.modules and "kiln._compile" not in sys.modules
        print("fresh process OK")
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fresh process OK" in result.stdout


def test_torch_compile_backend_fp16():
    import kiln.torch_backend

    torch._dynamo.reset()
    model = _resnet()
    compiled = torch.compile(model, backend="kiln", options={"precision": "fp16"})
    for batch in (2, 3):
        x = torch.randn(batch, 3, 64, 64, device=DEVICE)
        _close(compiled(x), _eager(model, x), atol=5e-2, rtol=5e-2)
        report = kiln.torch_backend.kiln_backend.last_report
        assert report.target == "cuda" and report.precision == "fp16" and report.engines
    torch._dynamo.reset()


def test_compiled_graph_is_engine_calls_only(resnet_fp16):
    _, compiled = resnet_fp16
    targets = {n.target for n in compiled.graph.nodes
               if n.op == "call_function" and n.target is not operator.getitem}
    assert targets == {torch.ops.kiln.execute_engine.default}, targets


# ---- the P2 model suite through kiln.compile -------------------------------------------------

def _p2_model_relative_error(name: str, batch: int, precision: str) -> tuple[float, float, int]:
    """kiln.compile's output against float32 eager on gpu_models' model and inputs: returns kiln's
    relative error, PyTorch's own error in `precision` (the model cast to it), and the number of
    nodes that fell back to PyTorch."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_models

    model = gpu_models.make_model(name).to(DEVICE)
    inputs = tuple(gpu_models.make_inputs(name, batch, DEVICE).values())
    with torch.no_grad():
        reference = model(*inputs).float()
        low = torch.float16 if precision == "fp16" else torch.bfloat16
        own = model.to(low)(*[x.to(low) if x.is_floating_point() else x for x in inputs]).float()
        model.float()
    compiled = kiln.compile(model, list(inputs), precision=precision)
    with torch.no_grad():
        got = compiled(*inputs).float()
    scale = reference.abs().max().clamp_min(1e-6)
    return (float((got - reference).abs().max() / scale), float((own - reference).abs().max() / scale),
            len(compiled.kiln_report.fallbacks))


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3", "bert_base", "vit_b_16"])
def test_p2_models_compile_and_match_eager(name):
    # The tolerance of tests/gpu/test_cuda_models.py: twice PyTorch's own error in fp16, at least 3e-2.
    err, own, fallbacks = _p2_model_relative_error(name, 2, "fp16")
    assert err <= max(3e-2, 2 * own), f"{name}: relative error {err:.3e}, PyTorch's own fp16 error {own:.3e}"
    assert fallbacks == 0, f"{name}: {fallbacks} nodes fell back to PyTorch"
