"""Real architectures on the GPU, built by kiln for the CUDA backend, against PyTorch eager on the
same GPU in float32 with TF32 off.

Tolerances (max |kiln - torch| / max |torch| over the output): float32 engines 1e-3 (cuDNN and
cuBLASLt sum in other orders than PyTorch's kernels); float16 engines 3e-2 (fp16 storage, fp32
accumulation), bfloat16 engines 6e-2; for both, or twice PyTorch's own error in that precision
against its fp32 result where that is larger."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln
from gpu_models import make_inputs, make_model, onnx_path

TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2, "bf16": 6e-2}
# An fp16 engine may also err by up to twice what PyTorch's own fp16 model errs by (deep CNNs with
# wide activations lose more than 3e-2 in fp16 whoever runs them).
FP16_VS_TORCH_FP16 = 2.0
MODELS = ["resnet50", "mobilenet_v3", "bert_base", "vit_b_16"]


@pytest.fixture(scope="module", autouse=True)
def exact_torch():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def reference(name: str, batch: int, dtype: torch.dtype = torch.float32) -> np.ndarray:
    model = make_model(name).cuda().to(dtype)
    inputs = make_inputs(name, batch, "cuda")
    inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    with torch.no_grad():
        return model(*inputs.values()).float().cpu().numpy()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want))) / float(np.max(np.abs(want)))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("name", MODELS)
def test_model_matches_pytorch(name: str, batch: int, precision: str):
    engine = kiln.Engine(kiln.build_onnx(str(onnx_path(name, batch)), target="cuda", precision=precision))
    feeds = {k: v.numpy() for k, v in make_inputs(name, batch).items()}
    got = engine.run(feeds)["y"]
    want = reference(name, batch)
    assert got.shape == want.shape
    err = relative_error(got, want)
    tolerance = TOLERANCE[precision]
    if precision != "fp32":
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        torch_err = relative_error(reference(name, batch, dtype), want)
        tolerance = max(tolerance, FP16_VS_TORCH_FP16 * torch_err)
        print(f"{name} batch {batch}: PyTorch's own {precision} relative error {torch_err:.2e}")
    print(f"{name} batch {batch} {precision}: relative error {err:.2e} (tolerance {tolerance:.1e})")
    assert err <= tolerance
