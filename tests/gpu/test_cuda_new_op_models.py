"""Small models built from the ops added in session 4, compiled with kiln.compile to CUDA engines
and compared with eager PyTorch on the same GPU (the single-op cases are in the conformance suite;
here the ops meet the builder's passes: precision lowering, the NHWC layout pass next to them,
fusions, and the torch integration).

- A UNet step: Conv, GroupNorm + SiLU, a strided Conv, ConvTranspose (stride 2), a skip Concat,
  PixelShuffle (DepthToSpace CRD) and InstanceNorm. fp32 engines (exact fp32 math, TF32 off in
  eager too) within 1e-3 + 1e-3 |ref|; fp16 engines within 0.05 + 0.05 |ref| of fp32 eager.
- A ranking head: Linear, TopK, ArgMax and a CumSum of the softmax, fp32. Indices are checked by
  the eager logits they select (robust to near-ties), values and sums within 1e-4.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
                allow_module_level=True)

import kiln  # noqa: E402

DEVICE = torch.device("cuda", 0)


class UnetStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, 32)
        self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.norm2 = nn.GroupNorm(8, 64)
        self.up = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.fuse = nn.Conv2d(64, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.out_norm = nn.InstanceNorm2d(3, affine=True)

    def forward(self, x):
        skip = nn.functional.silu(self.norm1(self.stem(x)))
        y = nn.functional.silu(self.norm2(self.down(skip)))
        y = torch.cat([self.up(y), skip], dim=1)
        return self.out_norm(self.shuffle(self.fuse(y)))


class RankingHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(64, 1000)

    def forward(self, x):
        logits = self.proj(x)
        values, indices = torch.topk(logits, 5, dim=-1)
        return values, indices, torch.argmax(logits, dim=-1), torch.cumsum(logits.softmax(-1), dim=-1)


def _seeded(cls):
    torch.manual_seed(0)
    model = cls().eval().to(DEVICE)
    with torch.no_grad():  # non-trivial affine parameters
        for module in model.modules():
            if isinstance(module, (nn.GroupNorm, nn.InstanceNorm2d)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def _eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture
def exact_fp32():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-3), ("fp16", 0.05)])
def test_unet_step_matches_pytorch(precision, tolerance, exact_fp32):
    model = _seeded(UnetStep)
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    compiled = kiln.compile(model, x, precision=precision, require_full_compilation=True)
    report = compiled.kiln_report
    assert report.fallbacks == [] and len(report.engines) == 1, report
    for op in ("aten.convolution.default", "aten.native_group_norm.default"):
        assert op in report.engines[0].ops, report.engines[0].ops
    got, want = compiled(x), _eager(model, x)
    assert got.shape == want.shape == (2, 3, 64, 64) and got.device == want.device
    torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)


def test_ranking_head_matches_pytorch(exact_fp32):
    model = _seeded(RankingHead)
    x = torch.randn(4, 64, device=DEVICE)
    compiled = kiln.compile(model, x, require_full_compilation=True)
    assert compiled.kiln_report.fallbacks == [], compiled.kiln_report
    values, indices, best, cumulative = compiled(x)
    want_values, _, _, want_cumulative = _eager(model, x)
    logits = _eager(model.proj, x)
    assert indices.dtype == best.dtype == torch.int64
    torch.testing.assert_close(values, want_values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.gather(logits, 1, indices), want_values, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits.gather(1, best[:, None])[:, 0], want_values[:, 0],
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cumulative, want_cumulative, atol=1e-4, rtol=1e-4)
