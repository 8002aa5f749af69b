"""libkiln_plugins.so as a user gets it: `kiln build --plugins`, `kiln inspect`, `kiln run`; dynamic
shapes; the default-domain ops that kiln's core implements stay core layers with the library loaded;
cmake --install puts it beside the runtime; kiln.compile maps a torch op to one of its plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

import kiln
from kiln_plugins_testing import (batched_nms_inputs, load, make_boxes, make_scores, one_node_model, plugin_library,
                                  reference_batched_nms, run_ort)
from kiln_testing import python_child_env


def cli(kiln_cli, *args):
    result = subprocess.run([str(kiln_cli), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"kiln {' '.join(map(str, args))}: rc {result.returncode}\n{result.stderr}"
    return result


def test_cli_builds_inspects_and_runs_a_plugin_model(tmp_path, build_dir, kiln_cli):
    library = plugin_library(build_dir)
    inputs = batched_nms_inputs(np.random.default_rng(0), 40, 3)
    onnx.save(one_node_model("BatchedNMS", inputs, ["keep"], {"iou_threshold": 0.5, "top_k": 10}), tmp_path / "m.onnx")
    cli(kiln_cli, "build", tmp_path / "m.onnx", "-o", tmp_path / "m.kiln", "--plugins", library)
    doc = json.loads(cli(kiln_cli, "inspect", tmp_path / "m.kiln", "--json").stdout)
    assert [(p["namespace"], p["name"], p["library"]) for p in doc["plugins"]] == [
        ("kiln", "BatchedNMS", "libkiln_plugins.so")]
    assert doc["plugins"][0]["fields"].keys() == {"iou_threshold", "top_k"}
    args = []
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    cli(kiln_cli, "run", tmp_path / "m.kiln", *args, "--output-dir", tmp_path / "out", "--plugins", library)
    want = reference_batched_nms(inputs["boxes"], inputs["scores"], inputs["idxs"], 0.5, 10)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "keep.npy"), want)


def test_dynamic_shapes_ask_the_bound_at_run_time(build_dir):
    load(build_dir)
    rng = np.random.default_rng(1)
    scalars = {"max_output": np.array([4], np.int64), "iou": np.array([0.5], np.float32)}
    model = one_node_model("NonMaxSuppression", {"boxes": make_boxes(rng, 1, 8, 0), "scores": make_scores(rng, 1, 2, 8),
                                                 **scalars}, ["selected"], {}, constants=scalars)
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[-1 if value.name == "scores" else 1].dim_param = "n"
    engine = kiln.Engine(kiln.build_onnx(model, profiles={"boxes": ((1, 1, 4), (1, 16, 4), (1, 64, 4)),
                                                          "scores": ((1, 2, 1), (1, 2, 16), (1, 2, 64))}))
    for n in (1, 20, 64):
        feeds = {"boxes": make_boxes(rng, 1, n, 0), "scores": make_scores(rng, 1, 2, n)}
        want = run_ort("NonMaxSuppression", {**feeds, **scalars}, ["selected"], {})[0]
        np.testing.assert_array_equal(engine.run(feeds)["selected"], want)


def test_default_domain_ops_stay_core_layers(tmp_path, build_dir, kiln_cli):
    # kiln's core implements NonMaxSuppression, RoiAlign and DeformConv: the plugins take only
    # nodes of domain "kiln", whatever is loaded.
    rng = np.random.default_rng(2)
    inputs = {"boxes": make_boxes(rng, 1, 6, 0), "scores": make_scores(rng, 1, 1, 6),
              "max_output": np.array([3], np.int64)}
    onnx.save(one_node_model("NonMaxSuppression", inputs, ["selected"], {}, domain=""), tmp_path / "core.onnx")
    cli(kiln_cli, "build", tmp_path / "core.onnx", "-o", tmp_path / "core.kiln", "--plugins", plugin_library(build_dir))
    doc = json.loads(cli(kiln_cli, "inspect", tmp_path / "core.kiln", "--json").stdout)
    assert not doc.get("plugins")
    assert [layer["op"] for layer in doc["layers"]] == ["NonMaxSuppression"]


def test_installed_beside_the_runtime(tmp_path, build_dir):
    # cmake --install's runtime component puts the plugin library next to libkiln_runtime.so, which
    # it finds there (RUNPATH $ORIGIN) and loads against.
    cmake = Path(sys.executable).parent / "cmake"
    cmake = str(cmake) if cmake.is_file() else shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is missing")
    subprocess.run([cmake, "--install", str(build_dir), "--prefix", str(tmp_path), "--component", "runtime"],
                   check=True, capture_output=True, timeout=120)
    installed = tmp_path / "lib" / "libkiln_plugins.so"
    assert installed.is_file() and (tmp_path / "lib" / "libkiln_runtime.so").is_file()
    assert not (tmp_path / "lib" / "libkiln.so").exists()
    dynamic = subprocess.run(["readelf", "-d", str(installed)], capture_output=True, text=True, check=True).stdout
    assert "$ORIGIN" in dynamic and "[libkiln_runtime.so]" in dynamic, dynamic


def test_kiln_compile_runs_torchvision_roi_align_as_a_plugin(tmp_path, build_dir):
    # kiln.compile maps torchvision::roi_align to kiln::TorchvisionRoiAlign (python/kiln/_plugin_ops.py),
    # tensor arguments as inputs and the others as fields by schema name (bool as int).
    # torchvision does not import beside the CPU torch here, so the op is declared under its
    # namespace with its schema, in a child process to keep the declaration out of this one.
    pytest.importorskip("torch")
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np, torch, kiln
        from kiln_plugins_testing import run_ort
        kiln.load_plugin_library(sys.argv[1])
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                   "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")

        @torch.library.impl(lib, "roi_align", "CPU")
        def _impl(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
            return input.new_zeros(rois.shape[0], input.shape[1], pooled_height, pooled_width)

        @torch.library.register_fake("torchvision::roi_align", lib=lib)
        def _fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
            return input.new_empty(rois.shape[0], input.shape[1], pooled_height, pooled_width)

        class M(torch.nn.Module):
            def forward(self, x, rois):
                return torch.ops.torchvision.roi_align(x * 2, rois, 0.5, 3, 2, 2, True) + 1

        x = torch.randn(2, 3, 9, 8)
        rois = torch.tensor([[0, 1, 1, 9, 12], [1, 0.5, 2, 15, 15], [1, 3, 3, 4, 4]])
        compiled = kiln.compile(M(), (x, rois))
        assert not compiled.kiln_report.fallbacks, compiled.kiln_report.fallbacks
        want = run_ort("RoiAlign", {"X": 2 * x.numpy(), "rois": rois[:, 1:].numpy(),
                                    "batch_indices": rois[:, 0].numpy().astype(np.int64)}, ["Y"],
                       {"spatial_scale": 0.5, "output_height": 3, "output_width": 2, "sampling_ratio": 2},
                       opset=16)[0] + 1
        np.testing.assert_allclose(compiled(x, rois).numpy(), want, rtol=1e-5, atol=1e-5)
        print("ok")
        """))
    _run_child_with_the_library(script, build_dir)


def test_kiln_compile_runs_torchvision_batched_nms_as_one_batched_nms_plugin(tmp_path, build_dir):
    # torchvision.ops.batched_nms is Python around torchvision::nms; for sizes torch.export can trace
    # it is the coordinate trick written out below. kiln.compile fuses that form into
    # kiln_plugins::batched_nms, run by kiln::BatchedNMS (python/kiln/_plugin_ops.py,
    # fuse_batched_nms). torchvision does not import beside the CPU torch here: the child declares
    # torchvision::nms with its schema.
    pytest.importorskip("torch")
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np, torch, kiln
        from kiln_plugins_testing import batched_nms_inputs, declare_torchvision_nms, reference_batched_nms
        kiln.load_plugin_library(sys.argv[1])

        def _impl(dets, scores, iou_threshold):
            raise AssertionError("torchvision::nms ran in PyTorch: the batched NMS was not fused")

        lib = declare_torchvision_nms(_impl)

        class BatchedNms(torch.nn.Module):
            def forward(self, boxes, scores, idxs):
                offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
                return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, 0.4)

        inputs = batched_nms_inputs(np.random.default_rng(3), 60, 4)
        args = tuple(torch.from_numpy(inputs[k]) for k in ("boxes", "scores", "idxs"))
        compiled = kiln.compile(BatchedNms(), args)
        report = compiled.kiln_report
        # Left to PyTorch: only the check torch.export adds on the kept count (no tensor).
        assert all("produces no tensor" in f.reason for f in report.fallbacks), report.fallbacks
        ops = {op for engine in report.engines for op in engine.ops}
        assert any("kiln_plugins.batched_nms" in op for op in ops), ops
        assert not any("torchvision.nms" in op for op in ops), ops
        want = reference_batched_nms(inputs["boxes"], inputs["scores"], inputs["idxs"], 0.4)
        got = compiled(*args).numpy()
        np.testing.assert_array_equal(got, want)
        assert len(set(inputs["idxs"][got])) > 1  # several classes kept: the offsets mattered
        print("ok")
        """))
    _run_child_with_the_library(script, build_dir)


def test_kiln_compile_exports_batched_nms_after_a_data_dependent_filter(tmp_path, build_dir):
    # torchvision's batched_nms branches in Python on the box count; after a score threshold that
    # count is data-dependent and torch.export stops (torchvision's detection models did not
    # export). kiln.compile traces torchvision.ops.boxes.batched_nms as one kiln_plugins::batched_nms
    # (python/kiln/_plugin_ops.py, batched_nms_as_one_op). torchvision does not import beside the CPU
    # torch here: the child stands in a module of that name whose batched_nms branches the same way.
    pytest.importorskip("torch")
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import sys, types, numpy as np, torch, kiln
        from kiln_plugins_testing import batched_nms_inputs, declare_torchvision_nms, reference_batched_nms
        kiln.load_plugin_library(sys.argv[1])

        def _nms(dets, scores, iou_threshold):  # one class: batched NMS with equal idxs
            same = np.zeros(len(dets), dtype=np.int64)
            return torch.from_numpy(reference_batched_nms(dets.numpy(), scores.numpy(), same, iou_threshold))

        lib = declare_torchvision_nms(_nms)

        def torchvision_like_batched_nms(boxes, scores, idxs, iou_threshold):
            if boxes.numel() == 0:  # what stops torch.export on a data-dependent count
                return torch.empty((0,), dtype=torch.int64)
            offsets = idxs.to(boxes) * (boxes.max() + 1)
            return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, iou_threshold)

        boxes_module = types.ModuleType("torchvision.ops.boxes")
        boxes_module.batched_nms = torchvision_like_batched_nms
        sys.modules["torchvision.ops.boxes"] = boxes_module

        class Head(torch.nn.Module):
            def forward(self, boxes, scores, idxs):
                keep = torch.where(scores > 0.2)[0]
                b, s, i = boxes[keep], scores[keep], idxs[keep]
                return keep[sys.modules["torchvision.ops.boxes"].batched_nms(b, s, i, 0.4)]

        inputs = batched_nms_inputs(np.random.default_rng(5), 60, 4)
        args = tuple(torch.from_numpy(inputs[k]) for k in ("boxes", "scores", "idxs"))
        try:
            torch.export.export(Head(), args)
            raise AssertionError("the stand-in should not export by itself")
        except Exception as error:
            assert "data-dependent" in str(error), error
        compiled = kiln.compile(Head(), args)
        assert boxes_module.batched_nms is torchvision_like_batched_nms  # restored after the export
        # One kiln_plugins::batched_nms node, not torchvision's Python: in an engine where its inputs'
        # sizes are known; here they come from a data-dependent filter, which kiln's partitioner
        # leaves to PyTorch (its fallback kernel is the coordinate trick around torchvision::nms).
        report = compiled.kiln_report
        ops = {op for engine in report.engines for op in engine.ops} | {f.op for f in report.fallbacks}
        assert any("kiln_plugins.batched_nms" in op for op in ops), ops
        assert not any("torchvision.nms" in op for op in ops), ops
        keep = np.nonzero(inputs["scores"] > 0.2)[0]
        want = keep[reference_batched_nms(inputs["boxes"][keep], inputs["scores"][keep], inputs["idxs"][keep], 0.4)]
        np.testing.assert_array_equal(compiled(*args).numpy(), want)
        print("ok")
        """))
    _run_child_with_the_library(script, build_dir)


def _run_child_with_the_library(script: Path, build_dir) -> None:
    """Runs `script` (given the plugin library's path) in a child Python; it must print "ok"."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = python_child_env({**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path, here])})
    result = subprocess.run([sys.executable, str(script), plugin_library(build_dir)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr
