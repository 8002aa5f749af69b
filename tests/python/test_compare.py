"""kiln.compare / python -m kiln.compare: a kiln engine against ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import kiln
from kiln_testing import python_child_env
from test_cli import small_cnn


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    model = small_cnn(batch=2)
    onnx.save(model, str(d / "model.onnx"))
    (d / "model.kiln").write_bytes(kiln.build_onnx(model))
    # Same bindings, other weights: an engine that does not match the model.
    other = small_cnn(batch=2)
    other.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(np.full(4, 3.0, np.float32), "b"))
    (d / "other.kiln").write_bytes(kiln.build_onnx(other))
    onnx.save(small_cnn(), str(d / "dynamic.onnx"))
    (d / "dynamic.kiln").write_bytes(kiln.build_onnx(small_cnn(), profiles={"x": ((1, 3, 8, 8), (4, 3, 8, 8))}))
    return d


def test_compare_passes_for_the_engine_of_the_model(files):
    result = kiln.compare(files / "model.onnx", files / "model.kiln")
    assert result.passed, str(result)
    (y,) = result.outputs
    assert y.name == "y" and y.elements == 8 and y.max_abs_error < 1e-5
    assert "PASS y" in str(result)


def test_compare_reports_a_mismatch(files):
    result = kiln.compare(onnx.load(str(files / "model.onnx")), (files / "other.kiln").read_bytes())
    assert not result.passed
    assert result.outputs[0].mismatches > 0 and result.outputs[0].max_abs_error > 0.1


def test_compare_dynamic_engine_needs_feeds(files):
    with pytest.raises(kiln.InvalidArgumentError, match="dynamic"):
        kiln.compare(files / "dynamic.onnx", files / "dynamic.kiln")
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert kiln.compare(files / "dynamic.onnx", files / "dynamic.kiln", {"x": x}).passed


def test_the_module_is_callable_too():
    import kiln.compare as module

    assert callable(module) and callable(kiln.compare)


def run_module(*args):
    env = python_child_env(dict(os.environ))
    return subprocess.run([sys.executable, "-m", "kiln.compare", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_python_dash_m(files):
    ok = run_module(files / "model.onnx", files / "model.kiln")
    assert ok.returncode == 0 and "PASS y" in ok.stdout, ok.stdout + ok.stderr
    bad = run_module(files / "model.onnx", files / "other.kiln", "--json")
    assert bad.returncode == 1, bad.stderr
    doc = json.loads(bad.stdout)
    assert not doc["passed"] and doc["outputs"][0]["mismatches"] > 0
    np.save(files / "x.npy", np.ones((3, 3, 8, 8), np.float32))
    dyn = run_module(files / "dynamic.onnx", files / "dynamic.kiln", "--input", f"x={files / 'x.npy'}")
    assert dyn.returncode == 0, dyn.stdout + dyn.stderr
    missing = run_module(files / "dynamic.onnx", files / "dynamic.kiln")
    assert missing.returncode == 1 and "dynamic" in missing.stderr, missing.stderr


def test_compare_engines_reports_cosine_and_top1_between_two_engines(files):
    same = kiln.compare_engines(files / "model.kiln", (files / "model.kiln").read_bytes())
    assert same.passed and same.label == "engine a vs engine b"
    output = same.outputs[0]
    assert output.cosine == pytest.approx(1.0) and output.top1_agreement == 1.0
    assert "cosine 1.000000" in str(same) and "top-1 agreement 100.00%" in str(same)
    different = kiln.compare_engines(files / "other.kiln", files / "model.kiln")
    assert not different.passed
    assert different.outputs[0].cosine is not None and different.outputs[0].cosine < 0.9999
    assert different.outputs[0].mismatches > 0


def test_compare_engines_runs_both_on_the_given_feeds(files):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    dynamic = kiln.Engine(str(files / "dynamic.kiln"))
    result = kiln.compare_engines(dynamic, files / "model.kiln", {"x": x})
    assert result.passed  # the same model at the same batch
    wider = np.concatenate([x, x])
    with pytest.raises(kiln.KilnError):
        kiln.compare_engines(dynamic, files / "model.kiln", {"x": wider})  # batch 4 is not model.kiln's
