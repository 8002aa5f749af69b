"""kiln.compile on PyTorch's PT2E quantization ops (quantized_decomposed quantize/dequantize per
tensor and per channel, what torch.ao's convert_pt2e leaves in a graph): they become ONNX
QuantizeLinear/DequantizeLinear inside engines when the export is exact, and stay in PyTorch with
the reason when it is not (a quantize range narrower than its dtype's: QuantizeLinear clamps to
the whole range)."""

from __future__ import annotations

import pytest
import torch

import kiln

pytest.importorskip("torch.ao.quantization.fx._decomposed")  # registers quantized_decomposed
qd = torch.ops.quantized_decomposed


class ConvQdq(torch.nn.Module):
    """Activation per tensor (int8 or uint8), weight per output channel: a PT2E-converted conv."""

    def __init__(self, dtype=torch.int8, low=-128, high=127, zero_point=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.q = (dtype, low, high, zero_point)

    def forward(self, x):
        dtype, low, high, zero_point = self.q
        x = qd.dequantize_per_tensor.default(
            qd.quantize_per_tensor.default(x, 0.02, zero_point, low, high, dtype), 0.02, zero_point, low, high, dtype)
        w = self.conv.weight
        scales = w.abs().amax((1, 2, 3)) / 127
        zeros = torch.zeros(8, dtype=torch.int64)
        w = qd.dequantize_per_channel.default(
            qd.quantize_per_channel.default(w, scales, zeros, 0, -127, 127, torch.int8), scales, zeros, 0, -127, 127,
            torch.int8)
        return torch.relu(torch.nn.functional.conv2d(x, w, self.conv.bias, padding=1))


class ActivationPerChannel(torch.nn.Module):
    def forward(self, x):
        scales = torch.tensor([0.01, 0.02, 0.05])
        zeros = torch.tensor([0, 3, -4])
        q = qd.quantize_per_channel.default(x, scales, zeros, 1, -128, 127, torch.int8)
        return qd.dequantize_per_channel.default(q, scales, zeros, 1, -128, 127, torch.int8) * 3


def _input():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("module", [ConvQdq(), ConvQdq(torch.uint8, 0, 255, 128), ActivationPerChannel()],
                         ids=["int8", "uint8", "per_channel_activation"])
def test_full_range_qdq_runs_inside_the_engine_and_matches_eager(module):
    torch.manual_seed(0)
    module = module.eval()
    x = _input()
    compiled = kiln.compile(module, x)
    report = compiled.kiln_report
    assert report.fully_compiled, str(report)
    ops = {op for engine in report.engines for op in engine.ops}
    assert any("quantize_per" in op for op in ops), ops
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)


def test_a_narrower_quantize_range_stays_in_pytorch_with_the_reason():
    module = ConvQdq(torch.int8, -10, 10, 3).eval()
    x = _input()
    compiled = kiln.compile(module, x)
    reasons = {f.node: f.reason for f in compiled.kiln_report.fallbacks}
    assert any("quant range [-10, 10] is narrower than torch.int8's [-128, 127]" in r for r in reasons.values()), reasons
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)
