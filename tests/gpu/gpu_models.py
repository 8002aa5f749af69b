"""Real architectures for the GPU tests and benchmarks (random weights, configurations built in
code, nothing downloaded), their inputs, and their ONNX exports, cached in KILN_GPU_CACHE.

The zoo: torchvision's resnet50, mobilenet_v3 (large), efficientnet_b0, convnext_tiny,
regnet_y_1_6gf, swin_t, vit_b_16 and densenet121 on 224x224 images; transformers' bert_base,
roberta_base, gpt2 and t5_small_encoder on 128 tokens with an attention mask (the last 16 tokens
padding), each returning its last hidden state.

Engines for several batch sizes come from one export with a dynamic batch (`export_for`): an input
profile whose min, opt and max are the same batch makes the builder treat the batch as static, so
the engine is the one a static export would give, for half the export time."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch

# Exports are keyed by this file's contents: a change to a model invalidates its cached ONNX.
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(os.environ.get("KILN_GPU_CACHE", "/tmp/kiln-gpu-cache")) / _SOURCE_HASH
SEQ = 128
IMAGE = 224
PADDING = 16  # trailing tokens masked out, so the mask matters

# name -> torchvision constructor
VISION_MODELS = {
    "resnet50": "resnet50",
    "mobilenet_v3": "mobilenet_v3_large",
    "efficientnet_b0": "efficientnet_b0",
    "convnext_tiny": "convnext_tiny",
    "regnet_y_1_6gf": "regnet_y_1_6gf",
    "swin_t": "swin_t",
    "vit_b_16": "vit_b_16",
    "densenet121": "densenet121",
}
# name -> vocabulary size (the random token ids' range)
TEXT_MODELS = {"bert_base": 30522, "roberta_base": 50265, "gpt2": 50257, "t5_small_encoder": 32128}
MODELS = list(VISION_MODELS) + list(TEXT_MODELS)


class LastHiddenState(torch.nn.Module):
    """A transformers encoder/decoder stack called as f(input_ids, attention_mask) -> last hidden
    state, the form the ONNX export and every peer take."""

    def __init__(self, model: torch.nn.Module, **call_kwargs):
        super().__init__()
        self.model = model
        self.call_kwargs = call_kwargs

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **self.call_kwargs).last_hidden_state


def _text_model(name: str) -> torch.nn.Module:
    # Configurations of the public checkpoints, written out so nothing is fetched.
    if name == "bert_base":
        from transformers import BertConfig, BertModel
        return LastHiddenState(BertModel(BertConfig(), add_pooling_layer=False))
    if name == "roberta_base":
        from transformers import RobertaConfig, RobertaModel
        config = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                               layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return LastHiddenState(RobertaModel(config, add_pooling_layer=False))
    if name == "gpt2":
        from transformers import GPT2Config, GPT2Model
        return LastHiddenState(GPT2Model(GPT2Config(use_cache=False)), use_cache=False)
    if name == "t5_small_encoder":
        from transformers import T5Config, T5EncoderModel
        config = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                          relative_attention_num_buckets=32, relative_attention_max_distance=128,
                          feed_forward_proj="relu", use_cache=False)
        return LastHiddenState(T5EncoderModel(config))
    raise ValueError(f"unknown model {name!r}; the zoo: {', '.join(MODELS)}")


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name in VISION_MODELS:
        import torchvision
        model = getattr(torchvision.models, VISION_MODELS[name])(weights=None)
        if name == "vit_b_16":
            # torchvision initialises the classification head to zeros: compare the class-token
            # features instead, which every layer before the head decides.
            model.heads = torch.nn.Identity()
    else:
        model = _text_model(name)
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
            model(torch.randn(8, 3, IMAGE, IMAGE, generator=g))
    model.eval()


def make_inputs(name: str, batch: int, device="cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if name in TEXT_MODELS:
        ids = torch.randint(0, TEXT_MODELS[name], (batch, SEQ), generator=g)
        mask = torch.ones(batch, SEQ, dtype=torch.int64)
        mask[:, SEQ - PADDING:] = 0
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if name not in VISION_MODELS:
        raise ValueError(f"unknown model {name!r}; the zoo: {', '.join(MODELS)}")
    return {"x": torch.randn(batch, 3, IMAGE, IMAGE, generator=g).to(device)}


def _export(name: str, path: Path, batch: int, dynamic: bool) -> None:
    model = make_model(name)
    inputs = make_inputs(name, batch)
    dynamic_shapes = None
    if dynamic:
        batch_dim = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = tuple({0: batch_dim} for _ in inputs)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # concurrent exporters never share one
    with torch.no_grad():
        torch.onnx.export(model, tuple(inputs.values()), str(partial), input_names=list(inputs),
                          output_names=["y"], dynamo=True, external_data=False,
                          dynamic_shapes=dynamic_shapes)
    partial.rename(path)  # a run killed mid-export leaves no half-written model in the cache


def onnx_path(name: str, batch: int) -> Path:
    """Exports (once per cache) the float32 model with a static batch."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_b{batch}.onnx"
    if not path.exists():
        _export(name, path, batch, dynamic=False)
    return path


def dynamic_onnx_path(name: str) -> Path:
    """Exports (once per cache) the float32 model with a dynamic batch (traced at batch 2: the
    exporter specialises a batch of 1). Raises what the exporter raises, e.g. when the model fixes
    its batch; a failure is remembered in the cache so later calls fail at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_dynamic.onnx"
    failure = path.with_suffix(".failed")
    if failure.exists():
        raise RuntimeError(f"{name}: the dynamic-batch export failed earlier: {failure.read_text()}")
    if not path.exists():
        try:
            _export(name, path, 2, dynamic=True)
        except Exception as error:
            failure.write_text(f"{type(error).__name__}: {str(error)[:2000]}")
            raise
    return path


def input_profiles(name: str, batch: int) -> dict[str, tuple]:
    """kiln.build_onnx's `profiles` pinning every input of the dynamic export to `batch`."""
    shapes = {k: tuple(v.shape) for k, v in make_inputs(name, 1).items()}
    return {k: ((batch,) + s[1:],) * 3 for k, s in shapes.items()}


def export_for(name: str, batch: int) -> tuple[Path, dict[str, tuple] | None, str]:
    """The ONNX model to build `name` at `batch` from: the dynamic-batch export and the profiles
    that pin its batch, or, where the dynamic export fails, the static export and no profiles.
    Returns (path, profiles, "dynamic" or "static")."""
    try:
        return dynamic_onnx_path(name), input_profiles(name, batch), "dynamic"
    except Exception:  # noqa: BLE001 - any exporter failure: the static export is the fallback
        return onnx_path(name, batch), None, "static"


def build_engine(name: str, batch: int, target: str = "cuda", precision: str = "fp16") -> tuple[bytes, dict]:
    """Engine bytes for `name` at `batch`, and how they were made: {"export": "dynamic"|"static",
    "export_s": seconds spent exporting in this call (0 when cached), "build_s": builder seconds}."""
    import kiln

    start = time.perf_counter()
    path, profiles, kind = export_for(name, batch)
    exported = time.perf_counter()
    engine = kiln.build_onnx(str(path), target=target, precision=precision, profiles=profiles)
    return engine, {"export": kind, "export_s": exported - start, "build_s": time.perf_counter() - exported}
