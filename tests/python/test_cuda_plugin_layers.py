"""Plugin layers in cuda engines, without a GPU (tests/gpu/test_cuda_plugins.py runs them): engines
with libkiln_plugins.so layers (NMS, data-dependent; RoiAlign; DeformConv; the fixed-size batched
NMS) cross-compile for the cuda target (cuda_arch), which runs every check a load makes without a
device, and the same models run on the CPU with the shapes the GPU tests expect."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import kiln
from cuda_plugin_models import MODELS, NMS_BOXES, NMS_MAX_PER_CLASS, PADDED_KEEP, nms_feeds, nms_model
from kiln_plugins_testing import load


def _cross_compile(model):
    try:
        return kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off")
    except kiln.KilnError as error:
        if "nvrtc" in str(error).lower():
            pytest.skip(f"no NVRTC in this build: {error}")
        raise


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_engine_with_plugin_layers_cross_compiles(name, build_dir, kiln_cli, tmp_path):
    load(build_dir)
    build, _, data_dependent = MODELS[name]
    if not (build_dir / "lib" / "libkiln_backend_cuda.so").is_file():
        # A build without CUDA builds the plugin library without CUDA kernels: its plugins declare
        # no CUDA path, and a cuda build refuses them by name rather than failing on the GPU.
        with pytest.raises(kiln.UnsupportedError, match=r"runs plugin kiln::\w+ v1 \(libkiln_plugins.so\), which has "
                                                        r"no CUDA implementation"):
            _cross_compile(build())
        return
    path = tmp_path / "engine.kiln"
    path.write_bytes(_cross_compile(build()))
    info = json.loads(subprocess.run([str(kiln_cli), "inspect", "--json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)
    ops = [layer["op"] for layer in info["layers"]]
    assert ("PluginDataDependent" if data_dependent else "Plugin") in ops, ops
    assert [p["library"] for p in info["plugins"]] == ["libkiln_plugins.so"], info["plugins"]


def test_nms_engine_on_the_cpu_gives_the_shapes_the_gpu_tests_compare(build_dir):
    load(build_dir)
    engine = kiln.Engine(kiln.build_onnx(nms_model()))
    assert [o.name for o in engine.outputs] == ["selected", "doubled"]
    counts = set()
    for seed, spread in [(0, 1.0), (1, 10.0), (2, 40.0)]:
        out = engine.run(nms_feeds(seed, spread=spread))
        selected, doubled = out["selected"], out["doubled"]
        assert selected.dtype == np.int64 and selected.ndim == 2 and selected.shape[1] == 3
        assert 0 < selected.shape[0] <= 2 * NMS_MAX_PER_CLASS and np.all(selected[:, 2] < NMS_BOXES)
        np.testing.assert_array_equal(doubled, selected.astype(np.float32) * 2)
        counts.add(selected.shape[0])
    assert len(counts) > 1, f"the inputs should keep different numbers of boxes, kept {counts}"


def test_fixed_size_batched_nms_engine_on_the_cpu(build_dir):
    load(build_dir)
    build, feeds, _ = MODELS["batched_nms_padded"]
    out = kiln.Engine(kiln.build_onnx(build())).run(feeds(0))
    keep, count = out["keep"], out["count"]
    assert keep.shape == (PADDED_KEEP,) and count.shape == () and 0 < int(count) <= PADDED_KEEP
    assert np.all(keep[int(count):] == -1) and np.all(keep[:int(count)] >= 0)
    np.testing.assert_array_equal(out["keep_f"], keep.astype(np.float32) + 1)
