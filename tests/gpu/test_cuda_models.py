"""Real architectures on the GPU, built by kiln for the CUDA backend, against PyTorch eager on the
same GPU in float32 with TF32 off.

Tolerances (max |kiln - torch| / max |torch| over the output): float32 engines 1e-3 (cuDNN and
cuBLASLt sum in other orders than PyTorch's kernels); float16 engines 3e-2 (fp16 storage, fp32
accumulation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln
from gpu_models import make_inputs, make_model, onnx_path

TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}
MODELS = ["resnet50", "mobilenet_v3", "bert_base", "vit_b_16"]


@pytest.fixture(scope="module", autouse=True)
def exact_torch():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def reference(name: str, batch: int) -> np.ndarray:
    model = make_model(name).cuda()
    inputs = make_inputs(name, batch, "cuda")
    with torch.no_grad():
        return model(*inputs.values()).float().cpu().numpy()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("name", MODELS)
def test_model_matches_pytorch(name: str, batch: int, precision: str):
    engine = kiln.Engine(kiln.build_onnx(str(onnx_path(name, batch)), target="cuda", precision=precision))
    feeds = {k: v.numpy() for k, v in make_inputs(name, batch).items()}
    got = engine.run(feeds)["y"]
    want = reference(name, batch)
    assert got.shape == want.shape
    err = float(np.max(np.abs(got.astype(np.float64) - want))) / float(np.max(np.abs(want)))
    print(f"{name} batch {batch} {precision}: relative error {err:.2e}")
    assert err <= TOLERANCE[precision]
