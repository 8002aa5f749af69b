"""Real architectures for the GPU tests and benchmarks (random weights, nothing downloaded), and
their ONNX export, cached per run in KILN_GPU_CACHE."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

# Exports are keyed by this file's contents: a change to a model invalidates its cached ONNX.
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(os.environ.get("KILN_GPU_CACHE", "/tmp/kiln-gpu-cache")) / _SOURCE_HASH
SEQ = 128


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision
        model = torchvision.models.resnet50(weights=None)
    elif name == "mobilenet_v3":
        import torchvision
        model = torchvision.models.mobilenet_v3_large(weights=None)
    elif name == "vit_b_16":
        import torchvision
        model = torchvision.models.vit_b_16(weights=None)
        # torchvision initialises the classification head to zeros: compare the class-token
        # features instead, which every layer before the head decides.
        model.heads = torch.nn.Identity()
    elif name == "bert_base":
        from transformers import BertConfig, BertModel

        class Bert(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert = BertModel(BertConfig(), add_pooling_layer=False)

            def forward(self, input_ids, attention_mask):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        model = Bert()
    else:
        raise ValueError(name)
    calibrate_batch_norm(model, name)
    return model.eval()


def calibrate_batch_norm(model: torch.nn.Module, name: str) -> None:
    """Random weights with freshly initialised BatchNorm statistics make activations shrink layer
    after layer (MobileNetV3's reach 1e-8, below float16's range). Running statistics averaged
    over a few random batches keep them near unit scale, as trained weights would."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, 224, 224, generator=g))
    model.eval()


def make_inputs(name: str, batch: int, device="cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if name == "bert_base":
        ids = torch.randint(0, 30522, (batch, SEQ), generator=g)
        mask = torch.ones(batch, SEQ, dtype=torch.int64)
        mask[:, SEQ - 16:] = 0  # some padding, so the mask matters
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    size = 224
    return {"x": torch.randn(batch, 3, size, size, generator=g).to(device)}


def onnx_path(name: str, batch: int) -> Path:
    """Exports (once per cache) the float32 model with a static batch."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_b{batch}.onnx"
    if not path.exists():
        model = make_model(name)
        inputs = make_inputs(name, batch)
        with torch.no_grad():
            torch.onnx.export(model, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=["y"], dynamo=True, external_data=False)
    return path
