"""Scaled dot-product attention as users export it, one small model per form, shared by the CPU
tests of the attention fusion (test_attention_forms.py, through the builder's test hook) and the
GPU tests (tests/gpu/test_cuda_attention.py, through `--target cuda`).

Each form is a PyTorch module with example inputs and an exporter: torch.onnx.export's
TorchScript exporter ("torchscript", opset 17), its dynamo exporter ("dynamo"), or kiln.compile's
route ("kiln_compile": torch.export with SDPA's math decomposition, core-aten decompositions, then
the dynamo exporter at kiln's opset), plus ONNX's own Attention node (opset 23). Head dims are
multiples of 16 so fp16 engines can run them on CUDA's tensor-core kernel.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

BATCH, SEQ, HEADS, DIM = 2, 12, 2, 32
WIDTH = HEADS * DIM


class Sdpa(torch.nn.Module):
    def __init__(self, scale=None, causal=False):
        super().__init__()
        self.scale, self.causal = scale, causal

    def forward(self, q, k, v, *mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[0] if mask else None,
                                              scale=self.scale, is_causal=self.causal)


class TimmAttention(torch.nn.Module):
    """timm's Attention: one qkv Linear, reshape(B, N, 3, H, D), permute(2, 0, 3, 1, 4),
    unbind, SDPA, transpose back and an output projection."""

    def __init__(self, width=WIDTH, heads=HEADS):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)

    def forward(self, x):
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, width))


class MultiheadAttention(torch.nn.Module):
    def __init__(self, batch_first=True):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=batch_first)

    def forward(self, x):
        return self.attention(x, x, x, need_weights=False)[0]


class ExplicitAttention(torch.nn.Module):
    """q @ k.transpose(-2, -1) * scale -> softmax -> @ v, or the scale as a division."""

    def __init__(self, divide=False):
        super().__init__()
        self.divide = divide

    def forward(self, q, k, v):
        scores = q @ k.transpose(-2, -1)
        scores = scores / DIM**0.5 if self.divide else scores * DIM**-0.5
        return scores.softmax(-1) @ v


class BatchedMatMulAttention(torch.nn.Module):
    """Rank-3 attention over [B*H, S, D] with torch.bmm."""

    def forward(self, q, k, v):
        return torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)) * DIM**-0.5, -1), v)


def _heads(seed):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(BATCH, HEADS, SEQ, DIM, generator=generator) for _ in range(3))


def _float_mask(seed):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.randn(BATCH, 1, 1, SEQ, generator=generator)
    mask[..., -3:] = float("-inf")  # padding
    return mask


def _bool_mask(seed):
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(BATCH, 1, SEQ, SEQ, generator=generator) > 0.3
    keep[..., 0] = True  # every query keeps a key: PyTorch's eager kernels disagree on empty rows
    return keep


@dataclass
class Form:
    name: str
    make: Callable[[], torch.nn.Module]
    inputs: Callable[[], tuple]
    exporter: str  # torchscript, dynamo, kiln_compile
    # Attributes the FusedAttention layer must have.
    attributes: dict = field(default_factory=dict)


def _timm_input():
    return (torch.randn(BATCH, SEQ, WIDTH, generator=torch.Generator().manual_seed(5)),)


def _seq_first_input():
    return (torch.randn(SEQ, BATCH, WIDTH, generator=torch.Generator().manual_seed(6)),)


def _bmm_inputs():
    return tuple(x.reshape(BATCH * HEADS, SEQ, DIM) for x in _heads(6))


BHSD = {"q_layout": "BHSD", "k_layout": "BHSD", "v_layout": "BHSD", "out_layout": "BHSD"}
PACKED = {"qkv_packed": 1, "out_layout": "BSHD"}
# nn.MultiheadAttention's in-projection is one [S, B, 3 * E] GEMM read in place as [S, B, 3, H, D].
MHA_PACKED = {"qkv_packed": 1, "qkv_layout": "SBTHD", "out_layout": "SBHD"}

FORMS = [
    Form("sdpa", Sdpa, lambda: _heads(1), "torchscript", BHSD),
    Form("sdpa", Sdpa, lambda: _heads(1), "dynamo", BHSD),
    Form("sdpa_float_mask", Sdpa, lambda: _heads(2) + (_float_mask(2),), "dynamo", BHSD),
    Form("sdpa_bool_mask", Sdpa, lambda: _heads(3) + (_bool_mask(3),), "torchscript",
         {**BHSD, "nan_to_zero": 1}),
    Form("sdpa_scale", lambda: Sdpa(scale=0.3), lambda: _heads(4), "dynamo",
         {**BHSD, "scale": 0.3}),
    Form("sdpa_causal", lambda: Sdpa(causal=True), lambda: _heads(5), "torchscript", BHSD),
    Form("sdpa_causal", lambda: Sdpa(causal=True), lambda: _heads(5), "dynamo", BHSD),
    Form("timm", TimmAttention, _timm_input, "torchscript", PACKED),
    Form("timm", TimmAttention, _timm_input, "dynamo", PACKED),
    Form("multihead_attention", MultiheadAttention, _timm_input, "dynamo", MHA_PACKED),
    Form("multihead_attention_seq_first", lambda: MultiheadAttention(batch_first=False), _seq_first_input, "dynamo",
         MHA_PACKED),
    Form("explicit", ExplicitAttention, lambda: _heads(7), "torchscript", BHSD),
    Form("explicit_div", lambda: ExplicitAttention(divide=True), lambda: _heads(8), "dynamo", BHSD),
    Form("bmm_rank3", BatchedMatMulAttention, _bmm_inputs, "torchscript", BHSD),
    Form("sdpa_float_mask", Sdpa, lambda: _heads(9) + (_float_mask(9),), "kiln_compile",
         {**BHSD, "nan_to_zero": 1}),
    Form("timm", TimmAttention, _timm_input, "kiln_compile", {**PACKED, "nan_to_zero": 1}),
    # A half model: PyTorch's CPU math SDPA computes in float32 between Casts, which precision
    # lowering turns into Casts that keep the dtype.
    Form("timm_half", lambda: TimmAttention().half(), lambda: (_timm_input()[0].half(),),
         "kiln_compile", {**PACKED, "nan_to_zero": 1}),
]


def form_id(form: Form) -> str:
    return f"{form.name}-{form.exporter}"


def export(form: Form) -> tuple[onnx.ModelProto, tuple, np.ndarray]:
    """The form's ONNX model, its example inputs and eager PyTorch's float32 output."""
    module = form.make().eval()
    torch.manual_seed(0)
    for parameter in module.parameters():  # seeded weights, whatever the module's init
        with torch.no_grad():
            parameter.copy_(torch.randn_like(parameter) / parameter.shape[-1] ** 0.5)
    inputs = form.inputs()
    with torch.no_grad():
        want = module(*inputs)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if form.exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=17)
            model = onnx.load_from_string(buffer.getvalue())
        elif form.exporter == "dynamo":
            model = torch.onnx.export(module, inputs, dynamo=True, verbose=False).model_proto
        else:
            from kiln._compile import export_module
            from kiln._partition_lowering import ONNX_OPSET

            program = export_module(module, inputs, None)
            with warnings.catch_warnings():  # the unlifted module reports training mode; no matter
                warnings.simplefilter("ignore", UserWarning)
                model = torch.onnx.export(program, inputs, dynamo=True, verbose=False,
                                          opset_version=ONNX_OPSET).model_proto
    return model, inputs, want.numpy()


def feeds(model: onnx.ModelProto, inputs: tuple) -> dict:
    return {info.name: x.numpy() for info, x in zip(model.graph.input, inputs)}


def onnx_attention_model(rank: int, causal: bool, bool_mask: bool) -> tuple[bytes, dict]:
    """One ONNX Attention node (opset 23) over rank-3 ([B, S, H*D], with the head-count
    attributes) or rank-4 ([B, H, S, D]) inputs, with feeds."""
    shape = [BATCH, SEQ, WIDTH] if rank == 3 else [BATCH, HEADS, SEQ, DIM]
    names = ["Q", "K", "V"] + (["attn_mask"] if bool_mask else [])
    attrs = {"is_causal": int(causal)}
    if rank == 3:
        attrs.update(q_num_heads=HEADS, kv_num_heads=HEADS)
    node = helper.make_node("Attention", names, ["Y"], name="attention", **attrs)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in names[:3]]
    if bool_mask:
        inputs.append(helper.make_tensor_value_info("attn_mask", TensorProto.BOOL, [SEQ, SEQ]))
    graph = helper.make_graph([node], "attention", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    rng = np.random.default_rng(rank)
    values = {n: rng.standard_normal(shape).astype(np.float32) for n in names[:3]}
    if bool_mask:
        keep = rng.random((SEQ, SEQ)) > 0.3
        keep[:, 0] = True
        keep[1] = False  # a query with no key: its row is 0
        values["attn_mask"] = keep
    return model.SerializeToString(), values


def relative_to_scale(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max(1, max |want|)."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
