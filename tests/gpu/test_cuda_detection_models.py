"""Issue 12's detection bar on the GPU machine: torchvision's fasterrcnn_mobilenet_v3_large_fpn,
retinanet_resnet50_fpn and maskrcnn_resnet50_fpn (random weights, eval mode, one fixed image size)
go through kiln.compile in fp16 with their NMS and RoIAlign as plugins of libkiln_plugins.so
(torchvision::nms, torchvision::roi_align; batched_nms's coordinate trick fused into
kiln::BatchedNMS), are saved as ExportedProgram and TorchScript, and run in a fresh process that
holds only torch, libkiln_torch.so, libkiln_runtime.so (with libkiln_backend_cuda.so beside it) and
libkiln_plugins.so, matching eager PyTorch: the same detections (same labels, boxes within 1e-2
relative, scores within fp16 tolerance). The same process without the plugin library gets the
missing-plugin error of the engine, not a crash.

Skips without torchvision. A model that cannot go through kiln.compile, or that kiln compiles
without running its NMS / RoIAlign as plugins, fails with what kiln said (not a skip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kiln

REPO = Path(__file__).resolve().parents[2]
DEVICE = "cuda"
IMAGE_SIZE = 320
MODELS = ["fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn", "maskrcnn_resnet50_fpn"]
# Plugins each model must use: every model has NMS; the two-stage ones also RoIAlign.
EXPECTED_PLUGIN_OPS = {
    "fasterrcnn_mobilenet_v3_large_fpn": ("nms", "roi_align"),
    "retinanet_resnet50_fpn": ("nms",),
    "maskrcnn_resnet50_fpn": ("nms", "roi_align"),
}
BOX_RTOL = 1e-2
SCORE_ATOL = 2e-3  # fp16 engines: about two units in the last place of scores in [0.05, 1]
BUILD = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))


class Detector(torch.nn.Module):
    """The model's detections for one image as plain tensors (export and TorchScript want no
    lists of dicts at the boundary)."""

    def __init__(self, model: torch.nn.Module, masks: bool):
        super().__init__()
        self.model = model
        self.masks = masks

    def forward(self, image: torch.Tensor):
        out = self.model([image])[0]
        if self.masks:
            return out["boxes"], out["scores"], out["labels"], out["masks"]
        return out["boxes"], out["scores"], out["labels"]


def _torchvision():
    return pytest.importorskip("torchvision", reason="torchvision is not importable here")


def _make(name: str) -> Detector:
    models = _torchvision().models.detection
    torch.manual_seed(0)
    model = getattr(models, name)(weights=None, weights_backbone=None, min_size=IMAGE_SIZE,
                                  max_size=IMAGE_SIZE)
    return Detector(model.eval().to(DEVICE), masks=name.startswith("mask"))


def _image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator).to(DEVICE)


def _plugin_library() -> Path:
    path = BUILD / "lib" / "libkiln_plugins.so"
    assert path.is_file(), f"{path} not built (target kiln_plugins)"
    return path


def assert_same_detections(got, want, name: str) -> None:
    """Same detections as eager: count, labels, boxes (1e-2 relative), scores (fp16)."""
    boxes, scores, labels = (t.detach().float().cpu() if t.is_floating_point() else t.cpu() for t in got[:3])
    want_boxes, want_scores, want_labels = (t.detach().float().cpu() if t.is_floating_point() else t.cpu()
                                            for t in want[:3])
    assert want_boxes.shape[0] > 0, f"{name}: eager found no detections; the comparison would prove nothing"
    assert boxes.shape == want_boxes.shape, f"{name}: {boxes.shape[0]} detections, eager {want_boxes.shape[0]}"
    assert torch.equal(labels, want_labels), f"{name}: labels differ:\n{labels}\n{want_labels}"
    scale = want_boxes.abs().clamp_min(1.0)
    worst = ((boxes - want_boxes).abs() / scale).max().item()
    assert worst <= BOX_RTOL, f"{name}: boxes differ by {worst:.3g} relative (bar {BOX_RTOL})"
    torch.testing.assert_close(scores, want_scores, atol=SCORE_ATOL, rtol=0, msg=lambda m: f"{name}: scores: {m}")


@pytest.fixture(scope="module")
def compiled_models(tmp_path_factory):
    """name -> (eager outputs, compiled module, saved paths) or the exception compile raised."""
    _torchvision()
    kiln.load_plugin_library(str(_plugin_library()))
    root = tmp_path_factory.mktemp("detection")
    results = {}
    for name in MODELS:
        model, image = _make(name), _image()
        with torch.inference_mode():
            want = model(image)
        try:
            compiled = kiln.compile(model, (image,), precision="fp16")
        except Exception as error:  # reported by the test of that model, with kiln's words
            results[name] = error
            continue
        paths = {fmt: root / f"{name}.{fmt}" for fmt in ("exported_program", "torchscript")}
        for fmt, path in paths.items():
            kiln.save(compiled, path, format=fmt)
        torch.save({"image": image.cpu(), "want": [t.cpu() for t in want]}, root / f"{name}.io.pt")
        results[name] = (want, compiled, paths, root / f"{name}.io.pt")
    return results


def _compiled(compiled_models, name):
    result = compiled_models[name]
    if isinstance(result, Exception):
        pytest.fail(f"{name} does not go through kiln.compile: {type(result).__name__}: {result}")
    return result


@pytest.mark.parametrize("name", MODELS)
def test_detection_model_compiles_with_plugins_and_matches_eager(compiled_models, name):
    want, compiled, _, _ = _compiled(compiled_models, name)
    report = compiled.kiln_report
    ops = {op for engine in report.engines for op in engine.ops}
    for plugin_op in EXPECTED_PLUGIN_OPS[name]:
        assert any(plugin_op in op for op in ops), (
            f"{name}: no engine runs torchvision {plugin_op} as a plugin; engines' ops {sorted(ops)}; "
            f"fallbacks {[(f.op, f.reason) for f in report.fallbacks]}")
    with torch.inference_mode():
        got = compiled(_image())
    assert_same_detections(got, want, name)


_FRESH_CHILD = """
import sys, torch
lib_dir, program, io_path, fmt, with_plugins = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
torch.ops.load_library(lib_dir + "/libkiln_torch.so")
if with_plugins:
    torch.ops.load_library(lib_dir + "/libkiln_plugins.so")
data = torch.load(io_path)
module = torch.jit.load(program) if fmt == "torchscript" else torch.export.load(program).module()
with torch.inference_mode():
    got = module(data["image"].cuda())
torch.save([t.cpu() for t in got], io_path + ".got." + fmt)
print("ran")
"""


def _fresh(lib_dir: Path, program: Path, io_path: Path, fmt: str, with_plugins: bool):
    torch_site = str(Path(torch.__file__).resolve().parent.parent)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "PYTHONPATH": torch_site, "LD_LIBRARY_PATH": str(lib_dir)}
    for key in ("CUDA_VISIBLE_DEVICES", "TORCHVISION_DISABLE"):
        if key in os.environ:
            env[key] = os.environ[key]
    return subprocess.run([sys.executable, "-S", "-c", _FRESH_CHILD, str(lib_dir), str(program), str(io_path),
                           fmt, "1" if with_plugins else "0"], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def deploy_libs(tmp_path_factory):
    lib = tmp_path_factory.mktemp("deploy_lib")
    # libkiln_backend_cuda.so: the cuda backend, which the runtime loads from its own directory.
    for name in ("libkiln_runtime.so", "libkiln_backend_cuda.so", "libkiln_torch.so", "libkiln_plugins.so"):
        shutil.copy2(BUILD / "lib" / name, lib / name)
    return lib


@pytest.mark.parametrize("fmt", ["exported_program", "torchscript"])
@pytest.mark.parametrize("name", MODELS)
def test_fresh_process_with_the_plugin_library_matches_eager(compiled_models, deploy_libs, name, fmt):
    want, _, paths, io_path = _compiled(compiled_models, name)
    result = _fresh(deploy_libs, paths[fmt], io_path, fmt, with_plugins=True)
    assert result.returncode == 0 and "ran" in result.stdout, result.stdout + result.stderr
    got = torch.load(str(io_path) + ".got." + fmt)
    assert_same_detections(got, [t.cpu() for t in want], f"{name} ({fmt}, fresh process)")


@pytest.mark.parametrize("fmt", ["exported_program", "torchscript"])
@pytest.mark.parametrize("name", MODELS)
def test_fresh_process_without_the_plugin_library_names_the_missing_plugin(compiled_models, deploy_libs,
                                                                          name, fmt):
    _, _, paths, io_path = _compiled(compiled_models, name)
    result = _fresh(deploy_libs, paths[fmt], io_path, fmt, with_plugins=False)
    assert result.returncode != 0 and result.returncode > 0, (
        f"expected a Python error, got exit status {result.returncode} (a crash is a negative status)\n"
        + result.stdout + result.stderr)
    assert "needs plugin kiln::" in result.stderr, result.stderr[-4000:]
    assert "libkiln_plugins.so" in result.stderr, result.stderr[-4000:]
