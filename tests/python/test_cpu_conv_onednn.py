"""The CPU backend's two convolutions on whole networks: ResNet-18- and MobileNetV2-shaped models
(reduced width and image size, so CI stays quick; grouped/depthwise, strided, fused residual and
Relu layers all occur) run with KILN_CPU_CONV=reference and =onednn and are compared with ONNX
Runtime. Where the runtime was built with oneDNN the two paths must also differ in the last bits
(summation order), which shows the oneDNN path really ran."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln
from cpu_conv_models import MobileNetV2, ResNet18, export, seeded
from kiln_testing import relative_error, run_ort

REL_TOL = 1e-4

MODELS = {
    "resnet18_w16": (lambda: ResNet18(width=16, classes=10), (1, 3, 64, 64)),
    "mobilenet_v2_w025": (lambda: MobileNetV2(width=0.25, classes=10), (1, 3, 64, 64)),
}


def runtime_has_onednn() -> bool:
    build = Path(os.environ.get("KILN_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
    libraries = list(build.glob("**/libkiln_runtime.so"))
    if not libraries:
        pytest.skip("libkiln_runtime.so not found under KILN_BUILD_DIR")
    # The runtime loads the oneDNN convolution from libkiln_cpu_onednn.so beside it, when built.
    return (libraries[0].parent / "libkiln_cpu_onednn.so").is_file()


@pytest.mark.parametrize("name", list(MODELS))
def test_both_cpu_convolutions_match_onnxruntime(name, tmp_path, monkeypatch):
    factory, shape = MODELS[name]
    model = seeded(factory(), seed=3)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    onnx_model = export(model, x, tmp_path / f"{name}.onnx")
    engine = kiln.Engine(kiln.build_onnx(str(tmp_path / f"{name}.onnx")))
    feeds = {"x": x.numpy()}
    want = run_ort(onnx_model, feeds)["y"]
    got = {}
    for path in ("reference", "onednn"):
        monkeypatch.setenv("KILN_CPU_CONV", path)
        got[path] = engine.run(feeds)["y"]
        assert np.all(np.isfinite(got[path])), path
        err = relative_error(got[path], want)
        assert err <= REL_TOL, f"{path} vs onnxruntime: max rel err {err:.3e} > {REL_TOL}"
        # A second call (prepared primitives, reordered weights) with other values.
        x2 = torch.randn(shape, generator=torch.Generator().manual_seed(2)).numpy()
        err2 = relative_error(engine.run({"x": x2})["y"], run_ort(onnx_model, {"x": x2})["y"])
        assert err2 <= REL_TOL, f"{path}, second call: max rel err {err2:.3e} > {REL_TOL}"
    if runtime_has_onednn():
        assert not np.array_equal(got["reference"], got["onednn"]), "KILN_CPU_CONV=onednn ran the reference"
    else:
        np.testing.assert_array_equal(got["reference"], got["onednn"])


def test_relu_of_nan_stays_nan_on_both_paths(tmp_path, monkeypatch):
    model = seeded(ResNet18(width=8, classes=10), seed=4)
    x = torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(5))
    export(model, x, tmp_path / "r.onnx")
    engine = kiln.Engine(kiln.build_onnx(str(tmp_path / "r.onnx")))
    poisoned = x.numpy().copy()
    poisoned[0, 1, 7, 9] = np.nan
    for path in ("reference", "onednn"):
        monkeypatch.setenv("KILN_CPU_CONV", path)
        y = engine.run({"x": poisoned})["y"]
        # The NaN reaches the global pool through every fused Conv+Add+Relu, so every logit is NaN.
        assert np.all(np.isnan(y)), f"{path}: {y}"


def test_an_unknown_kiln_cpu_conv_value_is_an_error(tmp_path, monkeypatch):
    model = seeded(ResNet18(width=8, classes=10), seed=4)
    x = torch.randn((1, 3, 32, 32))
    export(model, x, tmp_path / "r.onnx")
    engine = kiln.Engine(kiln.build_onnx(str(tmp_path / "r.onnx")))
    monkeypatch.setenv("KILN_CPU_CONV", "fastest")
    with pytest.raises(kiln.KilnError, match="KILN_CPU_CONV"):
        engine.run({"x": x.numpy()})
