"""The kiln.compile model zoo: public architectures with random weights, compiled through
``kiln.compile`` and checked against eager float32 PyTorch.

For each model: construct it (torchvision / transformers, configurations written out here, nothing
downloaded), run it eagerly, ``kiln.compile(model, inputs, report=...)`` it for the target, run the
compiled module on the same inputs, and record the engines, every node left to PyTorch with its
op and reason, the largest relative error over the outputs (max |kiln - torch| / max |torch|, per
output tensor, the measure of tests/gpu/test_cuda_models.py), and pass/fail (relative error within
the float32 tolerance of that file, 1e-3, and no fallback). Every output the model defines is
compared: a transformers ModelOutput or cache is flattened (torch.utils._pytree) on both sides.

Results are merged into a JSON file (one entry per model, so the zoo can be run in parts) and
docs/models.md is written from all of its entries:

  PYTHONPATH=python KILN_BUILD_DIR=build python scripts/model_zoo.py              # everything
  python scripts/model_zoo.py --models resnet18 gpt2 --no-markdown               # some models
  python scripts/model_zoo.py --markdown-only                                     # the table
  python scripts/model_zoo.py --list

Models whose package (torchvision, transformers) is missing are recorded as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
DEFAULT_JSON = REPO / "docs" / "models.json"
DEFAULT_MARKDOWN = REPO / "docs" / "models.md"
TOLERANCE = 1e-3  # float32 engines, tests/gpu/test_cuda_models.py
BATCH = 2
IMAGE = 64  # small images keep the CPU zoo quick; models with a fixed size say so
SEQ = 16
PADDING = 4  # trailing tokens masked out in text inputs, so the mask matters


# --- model constructors --------------------------------------------------------------------


@dataclass
class ZooModel:
    name: str
    family: str  # "torchvision classification", "transformers", ...
    build: Callable[[], tuple[nn.Module, tuple]]  # -> (model, example inputs)
    note: str = ""


def _images(size: int = IMAGE, batch: int = BATCH, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, channels, size, size, generator=g)


def _tokens(vocab: int, seq: int = SEQ, batch: int = BATCH, padding: int = PADDING):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if padding:
        mask[:, seq - padding:] = 0
    return ids, mask


def _torchvision():
    """torchvision, importable even where its compiled ops (_C) do not load (a CUDA build of
    torchvision beside a CPU torch): the classification, backbone and segmentation models used
    here are pure Python; only the two ops its import registers fake kernels for need a schema."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision.keep = lib
        import torchvision  # noqa: F401
    return sys.modules["torchvision"]


def calibrate_batch_norm(model: nn.Module, example: torch.Tensor) -> None:
    """Random weights with fresh BatchNorm statistics shrink activations layer after layer;
    statistics averaged over a few random batches keep them near unit scale, as trained weights
    would (the measure is relative to the output's scale)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(example.shape, generator=g))
    model.eval()


def _vision(constructor: str, size: int = IMAGE, **kwargs):
    def build():
        tv = _torchvision()
        torch.manual_seed(0)
        model = getattr(tv.models, constructor)(weights=None, **kwargs)
        x = _images(size)
        calibrate_batch_norm(model, x)
        return model.eval(), (x,)
    return build


def _segmentation(constructor: str, size: int = IMAGE, **kwargs):
    def build():
        tv = _torchvision()
        torch.manual_seed(0)
        model = getattr(tv.models.segmentation, constructor)(weights=None, weights_backbone=None,
                                                            **kwargs)
        x = _images(size)
        calibrate_batch_norm(model, x)
        return model.eval(), (x,)
    return build


def _fpn_backbone(kind: str):
    def build():
        tv = _torchvision()
        from torchvision.models.detection import backbone_utils
        torch.manual_seed(0)
        if kind == "resnet":
            model = backbone_utils.resnet_fpn_backbone(backbone_name="resnet18", weights=None,
                                                       trainable_layers=5)
        else:
            model = backbone_utils.mobilenet_backbone(backbone_name="mobilenet_v3_large",
                                                      weights=None, fpn=True, trainable_layers=6)
        del tv
        x = _images(IMAGE)
        calibrate_batch_norm(model, x)
        return model.eval(), (x,)
    return build


def _small_vit():
    tv = _torchvision()
    torch.manual_seed(0)
    model = tv.models.VisionTransformer(image_size=IMAGE, patch_size=16, num_layers=2,
                                        num_heads=4, hidden_dim=64, mlp_dim=128)
    # torchvision zero-initialises the head: compare the class-token features instead.
    model.heads = nn.Identity()
    return model.eval(), (_images(),)


class KeywordCall(nn.Module):
    """Calls a transformers model with keyword inputs and returns what it returns (a
    ModelOutput, with any cache in it): kiln.compile takes positional tensors."""

    def __init__(self, model: nn.Module, names: list[str], **call_kwargs):
        super().__init__()
        self.model = model
        self.names = names
        self.call_kwargs = call_kwargs

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs)), **self.call_kwargs)


def _text(make: Callable[[], nn.Module], vocab: int, *, mask: bool = True, **call_kwargs):
    def build():
        torch.manual_seed(0)
        model = make().eval()
        ids, attention = _tokens(vocab)
        if mask:
            return KeywordCall(model, ["input_ids", "attention_mask"], **call_kwargs), (ids,
                                                                                         attention)
        return KeywordCall(model, ["input_ids"], **call_kwargs), (ids,)
    return build


def _bert():
    from transformers import BertConfig, BertModel
    return BertModel(BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=128,
                                max_position_embeddings=128))


def _roberta():
    from transformers import RobertaConfig, RobertaModel
    return RobertaModel(RobertaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=128,
                                      max_position_embeddings=130, type_vocab_size=1,
                                      pad_token_id=1, bos_token_id=0, eos_token_id=2))


def _distilbert():
    from transformers import DistilBertConfig, DistilBertModel
    return DistilBertModel(DistilBertConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=4,
                                            hidden_dim=128, max_position_embeddings=128))


def _electra():
    from transformers import ElectraConfig, ElectraModel
    return ElectraModel(ElectraConfig(vocab_size=1000, embedding_size=32, hidden_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, max_position_embeddings=128))


def _deberta_v2():
    from transformers import DebertaV2Config, DebertaV2Model
    return DebertaV2Model(DebertaV2Config(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128,
                                          max_position_embeddings=128, relative_attention=True,
                                          position_buckets=32, pos_att_type=["p2c", "c2p"],
                                          norm_rel_ebd="layer_norm", share_att_key=True))


def _gpt2():
    from transformers import GPT2Config, GPT2Model
    return GPT2Model(GPT2Config())  # the default (GPT-2 small) configuration, use_cache=True


def _opt():
    from transformers import OPTConfig, OPTModel
    return OPTModel(OPTConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                              num_attention_heads=4, max_position_embeddings=128,
                              word_embed_proj_dim=64))


def _llama():
    from transformers import LlamaConfig, LlamaModel
    return LlamaModel(LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, max_position_embeddings=128))


def _mistral():
    from transformers import MistralConfig, MistralModel
    return MistralModel(MistralConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128,
                                      sliding_window=8))


def _t5_config():
    from transformers import T5Config
    return T5Config(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                    num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                    relative_attention_max_distance=32, decoder_start_token_id=0)


def _t5():
    torch.manual_seed(0)
    from transformers import T5Model
    model = T5Model(_t5_config()).eval()
    ids, mask = _tokens(1000)
    decoder_ids, _ = _tokens(1000, seq=8, padding=0)
    return KeywordCall(model, ["input_ids", "attention_mask", "decoder_input_ids"]), (
        ids, mask, decoder_ids)


def _bart():
    torch.manual_seed(0)
    from transformers import BartConfig, BartModel
    model = BartModel(BartConfig(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2,
                                 encoder_attention_heads=4, decoder_attention_heads=4,
                                 encoder_ffn_dim=128, decoder_ffn_dim=128,
                                 max_position_embeddings=128)).eval()
    ids, mask = _tokens(1000)
    decoder_ids, _ = _tokens(1000, seq=8, padding=0)
    return KeywordCall(model, ["input_ids", "attention_mask", "decoder_input_ids"]), (
        ids, mask, decoder_ids)


def _whisper():
    torch.manual_seed(0)
    from transformers import WhisperConfig, WhisperModel
    config = WhisperConfig(vocab_size=1000, num_mel_bins=16, d_model=64, encoder_layers=2,
                           decoder_layers=2, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           max_source_positions=32, max_target_positions=64,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1)
    model = WhisperModel(config).eval()
    g = torch.Generator().manual_seed(1)
    features = torch.randn(BATCH, 16, 64, generator=g)  # 2 * max_source_positions frames
    decoder_ids, _ = _tokens(1000, seq=8, padding=0)
    return KeywordCall(model, ["input_features", "decoder_input_ids"]), (features, decoder_ids)


def _hf_vision(make: Callable[[], nn.Module], size: int = IMAGE):
    def build():
        torch.manual_seed(0)
        model = make().eval()
        return KeywordCall(model, ["pixel_values"]), (_images(size),)
    return build


def _hf_vit():
    from transformers import ViTConfig, ViTModel
    return ViTModel(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=128, image_size=IMAGE, patch_size=16))


def _hf_swin():
    from transformers import SwinConfig, SwinModel
    return SwinModel(SwinConfig(image_size=IMAGE, patch_size=4, embed_dim=32, depths=[2, 2],
                                num_heads=[2, 4], window_size=4))


def _hf_convnext():
    from transformers import ConvNextConfig, ConvNextModel
    return ConvNextModel(ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1]))


def _hf_segformer():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    return SegformerForSemanticSegmentation(SegformerConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128],
        num_attention_heads=[1, 2, 4, 8], decoder_hidden_size=64, num_labels=5))


def _clip():
    torch.manual_seed(0)
    from transformers import CLIPConfig, CLIPModel
    config = CLIPConfig(
        text_config=dict(vocab_size=1000, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=32, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, image_size=IMAGE, patch_size=16),
        projection_dim=32)
    model = CLIPModel(config).eval()
    ids, mask = _tokens(1000)
    return KeywordCall(model, ["input_ids", "attention_mask", "pixel_values"]), (
        ids, mask, _images())


TV = "torchvision classification"
ZOO: list[ZooModel] = [
    ZooModel("resnet18", TV, _vision("resnet18")),
    ZooModel("resnet50", TV, _vision("resnet50")),
    ZooModel("resnext50_32x4d", TV, _vision("resnext50_32x4d")),
    ZooModel("wide_resnet50_2", TV, _vision("wide_resnet50_2")),
    ZooModel("mobilenet_v2", TV, _vision("mobilenet_v2")),
    ZooModel("mobilenet_v3_large", TV, _vision("mobilenet_v3_large")),
    ZooModel("efficientnet_b0", TV, _vision("efficientnet_b0")),
    ZooModel("efficientnet_v2_s", TV, _vision("efficientnet_v2_s")),
    ZooModel("convnext_tiny", TV, _vision("convnext_tiny")),
    ZooModel("regnet_y_400mf", TV, _vision("regnet_y_400mf")),
    ZooModel("densenet121", TV, _vision("densenet121")),
    ZooModel("squeezenet1_1", TV, _vision("squeezenet1_1")),
    ZooModel("shufflenet_v2_x1_0", TV, _vision("shufflenet_v2_x1_0")),
    ZooModel("mnasnet1_0", TV, _vision("mnasnet1_0")),
    ZooModel("googlenet", TV, _vision("googlenet", init_weights=True, aux_logits=False)),
    ZooModel("inception_v3", TV, _vision("inception_v3", size=96, init_weights=True,
                                         aux_logits=False), "96x96 images (its minimum is 75)"),
    ZooModel("alexnet", TV, _vision("alexnet")),
    ZooModel("vgg11_bn", TV, _vision("vgg11_bn")),
    ZooModel("vit (torchvision)", TV, _small_vit, "VisionTransformer, 2 layers, width 64"),
    ZooModel("swin_t", TV, _vision("swin_t")),
    ZooModel("maxvit_t", TV, _vision("maxvit_t", size=224), "224x224 images (fixed by the model)"),
    ZooModel("resnet18_fpn", "torchvision detection backbone", _fpn_backbone("resnet"),
             "resnet_fpn_backbone: a dict of 5 feature maps"),
    ZooModel("mobilenet_v3_fpn", "torchvision detection backbone", _fpn_backbone("mobilenet"),
             "mobilenet_backbone(fpn=True): a dict of feature maps"),
    ZooModel("fcn_resnet50", "torchvision segmentation", _segmentation("fcn_resnet50")),
    ZooModel("deeplabv3_mobilenet_v3_large", "torchvision segmentation",
             _segmentation("deeplabv3_mobilenet_v3_large")),
    ZooModel("lraspp_mobilenet_v3_large", "torchvision segmentation",
             _segmentation("lraspp_mobilenet_v3_large")),
    ZooModel("bert", "transformers", _text(_bert, 1000), "2 layers, width 64"),
    ZooModel("roberta", "transformers", _text(_roberta, 1000), "2 layers, width 64"),
    ZooModel("distilbert", "transformers", _text(_distilbert, 1000), "2 layers, width 64"),
    ZooModel("electra", "transformers", _text(_electra, 1000), "2 layers, width 64"),
    ZooModel("deberta_v2", "transformers", _text(_deberta_v2, 1000),
             "2 layers, width 64, relative attention"),
    ZooModel("gpt2", "transformers", _text(_gpt2, 50257),
             "default GPT2Config (124M parameters), cache included"),
    ZooModel("opt", "transformers", _text(_opt, 1000), "2 layers, width 64, cache included"),
    ZooModel("llama", "transformers", _text(_llama, 1000),
             "2 layers, width 64, grouped KV heads, cache included"),
    ZooModel("mistral", "transformers", _text(_mistral, 1000),
             "2 layers, width 64, sliding window 8, cache included"),
    ZooModel("t5", "transformers", _t5, "encoder-decoder, 2+2 layers, width 64"),
    ZooModel("bart", "transformers", _bart, "encoder-decoder, 2+2 layers, width 64"),
    ZooModel("whisper", "transformers", _whisper, "encoder-decoder, 2+2 layers, 16 mel bins"),
    ZooModel("vit", "transformers", _hf_vision(_hf_vit), "2 layers, width 64"),
    ZooModel("clip", "transformers", _clip, "text + vision towers, 2 layers each, width 64"),
    ZooModel("swin", "transformers", _hf_vision(_hf_swin), "2 stages, window 4"),
    ZooModel("convnext", "transformers", _hf_vision(_hf_convnext), "widths 16..128"),
    ZooModel("segformer", "transformers", _hf_vision(_hf_segformer),
             "4 blocks, widths 16..128, semantic segmentation head"),
]
BY_NAME = {m.name: m for m in ZOO}


# --- checking --------------------------------------------------------------------------------


def _leaves(value) -> list:
    """The tensors of an output, in order: tuples, lists, dicts and ModelOutputs are walked, and
    transformers' caches give every layer's keys and values (read here from the objects, not
    through any pytree registration, so the check does not rely on kiln's)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if value is None or isinstance(value, (int, float, bool, str)):
        return []
    if isinstance(value, dict):  # ModelOutput is an OrderedDict of its non-None fields
        return [t for v in value.values() for t in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _leaves(v)]
    if hasattr(value, "self_attention_cache") and hasattr(value, "cross_attention_cache"):
        return _leaves(value.self_attention_cache) + _leaves(value.cross_attention_cache)
    if hasattr(value, "layers"):  # a transformers Cache
        return [t for layer in value.layers for t in _leaves([getattr(layer, "keys", None),
                                                               getattr(layer, "values", None)])]
    raise TypeError(f"cannot compare an output of type {type(value).__name__}")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    if got.shape != want.shape:
        raise AssertionError(f"shape {tuple(got.shape)}, want {tuple(want.shape)}")
    if not want.is_floating_point():
        return 0.0 if torch.equal(got, want) else float("inf")
    scale = float(want.abs().max()) if want.numel() else 0.0
    diff = float((got.double() - want.double()).abs().max()) if want.numel() else 0.0
    return diff / scale if scale > 0 else diff


def _short(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _grow_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` with dim 0 made ``batch`` long by repeating its rows (keeps token ids and masks
    valid)."""
    reps = -(-batch // x.shape[0])
    return torch.cat([x] * reps)[:batch]


def check_dynamic_batch(model: nn.Module, inputs: tuple, device: str) -> dict:
    """Compiles again with ``dynamic_batch=(1, BATCH, 4)`` and runs batches BATCH and 3 against
    eager PyTorch. Returns {"status", "max_rel_error", "fallbacks"} or {"status", "error"}."""
    import kiln

    result: dict = {"status": "error"}
    try:
        compiled = kiln.compile(model, inputs, device=device, dynamic_batch=(1, BATCH, 4))
        result["fallbacks"] = len(compiled.kiln_report.fallbacks)
        errors = []
        for batch in (BATCH, 3):
            grown = tuple(_grow_batch(x, batch) for x in inputs)
            with torch.no_grad():
                want = _leaves(model(*grown))
                got = _leaves(compiled(*[x.to(device) for x in grown]))
            if len(got) != len(want):
                raise AssertionError(f"{len(got)} output tensors, eager gives {len(want)}")
            errors += [relative_error(g.cpu(), w) for g, w in zip(got, want)]
        result["max_rel_error"] = max(errors) if errors else 0.0
        accurate = result["max_rel_error"] <= TOLERANCE
        result["status"] = ("pass" if accurate and not result["fallbacks"]
                            else "fallback" if accurate else "mismatch")
    except Exception as error:
        result["error"] = _short(f"{type(error).__name__}: {error}", 400)
    return result


def check(zoo_model: ZooModel, target: str, dynamic_batch: bool = False) -> dict:
    import kiln

    row: dict = {"model": zoo_model.name, "family": zoo_model.family, "note": zoo_model.note,
                 "status": "error"}
    start = time.perf_counter()
    try:
        model, inputs = zoo_model.build()
    except ImportError as error:
        row.update(status="skipped", error=f"{type(error).__name__}: {error}")
        return row
    row["parameters"] = sum(p.numel() for p in model.parameters())
    row["inputs"] = [f"{str(x.dtype).replace('torch.', '')}{list(x.shape)}" for x in inputs]
    device = "cuda" if target == "cuda" else "cpu"
    stage = "eager"
    try:
        with torch.no_grad():
            want = _leaves(model(*inputs))
        row["outputs"] = len(want)
        stage = "compile"
        compile_start = time.perf_counter()
        compiled = kiln.compile(model, inputs, device=device)
        row["compile_s"] = round(time.perf_counter() - compile_start, 1)
        report = compiled.kiln_report
        row["engines"] = len(report.engines)
        row["engine_nodes"] = sum(e.node_count for e in report.engines)
        row["fallbacks"] = [{"node": f.node, "op": f.op, "reason": f.reason}
                            for f in report.fallbacks]
        stage = "run"
        with torch.no_grad():
            got = _leaves(compiled(*[x.to(device) for x in inputs]))
        if len(got) != len(want):
            raise AssertionError(f"{len(got)} output tensors, eager gives {len(want)}")
        errors = [relative_error(g.cpu(), w) for g, w in zip(got, want)]
        row["max_rel_error"] = max(errors) if errors else 0.0
        accurate = row["max_rel_error"] <= TOLERANCE
        row["status"] = ("pass" if accurate and not row["fallbacks"] and row["engines"]
                         else "fallback" if accurate else "mismatch")
        if dynamic_batch:
            stage = "dynamic batch"
            row["dynamic_batch"] = check_dynamic_batch(model, inputs, device)
    except Exception as error:  # record and go on to the next model
        row["stage"] = stage
        row["error"] = _short(f"{type(error).__name__}: {error}")
        if os.environ.get("ZOO_TRACEBACK"):
            traceback.print_exc()
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


# --- results ---------------------------------------------------------------------------------


def _fallback_summary(row: dict, limit: int = 4) -> str:
    fallbacks = row.get("fallbacks") or []
    if not fallbacks:
        return ""
    by_reason: dict[tuple, list] = {}
    for f in fallbacks:
        by_reason.setdefault((f["op"], f["reason"]), []).append(f["node"])
    parts = []
    for (op, reason), nodes in list(by_reason.items())[:limit]:
        names = ", ".join(nodes[:2]) + (f" +{len(nodes) - 2}" if len(nodes) > 2 else "")
        parts.append(f"`{op}` ({names}): {_short(reason, 160)}")
    if len(by_reason) > limit:
        parts.append(f"... {len(by_reason) - limit} more kinds")
    return "; ".join(parts).replace("|", "\\|")


def write_markdown(results: dict, meta: dict, path: Path) -> None:
    rows = [results[m.name] for m in ZOO if m.name in results]
    rows += [r for name, r in results.items() if name not in BY_NAME]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [
        "# kiln.compile model zoo",
        "",
        "Public architectures with random weights (configurations written out in code, nothing "
        "downloaded), compiled with `kiln.compile(model, inputs)` and run against eager float32 "
        "PyTorch on the same inputs. Generated by `scripts/model_zoo.py`; rerun it with",
        "",
        "```",
        "PYTHONPATH=python KILN_BUILD_DIR=build python scripts/model_zoo.py --target "
        f"{meta.get('target', 'cpu')}",
        "```",
        "",
        "torchvision and transformers are not among kiln's requirements: install them to rerun "
        "(a model whose package is missing is recorded as skipped). A torchvision whose compiled "
        "ops do not load (a CUDA build beside a CPU torch) still serves: these models need none "
        "of them. Add `--dynamic-batch` for the dynamic-batch column, `--models NAME ...` to "
        "rerun some models (results merge into the JSON).",
        "",
        f"Last run: target **{meta.get('target')}**, torch {meta.get('torch')}, torchvision "
        f"{meta.get('torchvision')}, transformers {meta.get('transformers')}, "
        f"{meta.get('date')}, {meta.get('machine')}. Batch {BATCH}; images {IMAGE}x{IMAGE} "
        f"unless noted; text {SEQ} tokens, the last {PADDING} masked out. The JSON beside this "
        "file has every entry in full (every fallback's node, op and reason).",
        "",
        "Status: **pass** = no node left to PyTorch and every output tensor within the float32 "
        f"tolerance of tests/gpu/test_cuda_models.py (max \\|kiln - torch\\| / max \\|torch\\| "
        f"<= {TOLERANCE:g}); **fallback** = within tolerance but some nodes ran in PyTorch; "
        "**mismatch** = outside tolerance; **error** = a stage failed. All outputs the model "
        "returns are compared, ModelOutputs and caches flattened. *Dynamic batch* (with "
        f"`--dynamic-batch`): compiled again with `dynamic_batch=(1, {BATCH}, 4)` and run at "
        f"batches {BATCH} and 3 (status, max rel. error); *not run* where that option was not "
        "given.",
        "",
        "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" of {len(rows)}.",
        "",
        "| model | family | status | engines | nodes left to PyTorch | max rel. error | "
        "compile s | dynamic batch | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        error = r.get("max_rel_error")
        err_text = f"{error:.1e}" if isinstance(error, float) else ""
        fallbacks = r.get("fallbacks")
        left = "" if fallbacks is None else str(len(fallbacks))
        detail = _fallback_summary(r)
        if r.get("error"):
            detail = f"{r.get('stage', '')}: {_short(r['error'], 240)}".replace("|", "\\|")
        notes = "; ".join(x for x in (r.get("note", ""), detail) if x)
        dynamic = r.get("dynamic_batch") or {}
        dynamic_text = dynamic.get("status", "not run")
        if dynamic.get("error"):
            dynamic_text += ": " + _short(dynamic["error"], 160).replace("|", "\\|")
        elif "max_rel_error" in dynamic:
            dynamic_text += f" ({dynamic['max_rel_error']:.1e})"
        lines.append(f"| {r['model']} | {r['family']} | {r['status']} | {r.get('engines', '')} "
                     f"| {left} | {err_text} | {r.get('compile_s', '')} | {dynamic_text} "
                     f"| {notes} |")
    lines.append("")
    path.write_text("\n".join(lines))


def _versions(target: str) -> dict:
    meta = {"target": target, "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    for package in ("torchvision", "transformers"):
        try:
            module = _torchvision() if package == "torchvision" else __import__(package)
            meta[package] = module.__version__
        except ImportError:
            meta[package] = "not installed"
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="names (default: the whole zoo)")
    parser.add_argument("--target", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-markdown", action="store_true")
    parser.add_argument("--markdown-only", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="drop earlier entries of the JSON")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--dynamic-batch", action="store_true",
                        help=f"also compile with dynamic_batch=(1, {BATCH}, 4) and run batches "
                        f"{BATCH} and 3")
    args = parser.parse_args()
    if args.list:
        for m in ZOO:
            print(f"{m.name:32} {m.family:32} {m.note}")
        return
    unknown = [n for n in args.models or [] if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown models {unknown}; see --list")
    data = {"meta": {}, "results": {}}
    if args.json.exists() and not args.fresh:
        data = json.loads(args.json.read_text())
    if not args.markdown_only:
        try:
            _torchvision()  # first: transformers imports torchvision when it can
        except ImportError:
            pass
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        data["meta"] = _versions(args.target)
        for name in args.models or [m.name for m in ZOO]:
            row = check(BY_NAME[name], args.target, args.dynamic_batch)
            data["results"][name] = row
            brief = {k: row.get(k) for k in ("model", "status", "engines", "max_rel_error",
                                             "compile_s", "seconds", "dynamic_batch")}
            brief["fallbacks"] = len(row.get("fallbacks") or [])
            if row.get("error"):
                brief["error"] = _short(row["error"], 300)
            print(json.dumps(brief), flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(data, indent=1) + "\n")
            gc.collect()
    if not args.no_markdown:
        write_markdown(data["results"], data["meta"], args.markdown)


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))
                                              / "lib"))
    main()
