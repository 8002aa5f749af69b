"""The options a trtexec user reaches for: --threads, --shapes, --duration, samples/s,
--profile without N in --json, --export-times, build --verbose, kiln compare, and the errors
around them."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

from kiln_testing import run_ort
from test_cli import kiln, small_cnn


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli_trtexec")


@pytest.fixture(scope="module")
def onnx_path(workdir):
    path = workdir / "dynamic.onnx"
    onnx.save(small_cnn(), str(path))
    return path


@pytest.fixture(scope="module")
def engine(kiln_cli, onnx_path, workdir):
    path = workdir / "dynamic.kiln"
    kiln(kiln_cli, "build", onnx_path, "-o", path, "--profile", "x:min=1x3x8x8,opt=2x3x8x8,max=6x3x8x8")
    return path


def bench_json(kiln_cli, engine, *args):
    return json.loads(kiln(kiln_cli, "bench", engine, "--json", *args).stdout)


def test_threads_change_no_result_and_are_reported(kiln_cli, engine, workdir):
    outputs = []
    for threads in (1, 3):
        out_dir = workdir / f"threads{threads}"
        kiln(kiln_cli, "run", engine, "--random", "--threads", threads, "--output-dir", out_dir)
        outputs.append(np.load(out_dir / "y.npy"))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    assert bench_json(kiln_cli, engine, "--iterations", 2, "--threads", 2)["threads"] == 2
    assert "2 thread(s)" in kiln(kiln_cli, "bench", engine, "--iterations", 2, "--threads", 2).stdout


def test_shapes_set_the_random_inputs_of_a_dynamic_engine(kiln_cli, engine, workdir):
    out_dir = workdir / "shapes5"
    kiln(kiln_cli, "run", engine, "--random", "--shapes", "x:5x3x8x8", "--output-dir", out_dir, "--save-inputs")
    x = np.load(out_dir / "input.x.npy")
    assert x.shape == (5, 3, 8, 8)
    np.testing.assert_allclose(np.load(out_dir / "y.npy"), run_ort(small_cnn(), {"x": x})["y"],
                               rtol=1e-5, atol=1e-5)
    doc = bench_json(kiln_cli, engine, "--iterations", 3, "--shapes=x:4x3x8x8")
    assert doc["batch"] == 4
    assert doc["samples_per_s"] == pytest.approx(4 * doc["throughput_per_s"], rel=1e-6)
    text = kiln(kiln_cli, "bench", engine, "--iterations", 2, "--shapes", "x:4x3x8x8").stdout
    assert re.search(r"throughput: [\d.]+ calls/s, [\d.]+ samples/s \(batch 4\)", text), text


def test_shapes_errors(kiln_cli, engine):
    result = kiln(kiln_cli, "bench", engine, "--shapes", "x:9x3x8x8", expect=1)
    assert "'x'" in result.stderr and "9" in result.stderr, result.stderr
    result = kiln(kiln_cli, "run", engine, "--random", "--shapes", "z:1x3x8x8", expect=1)
    assert "no input named 'z'" in result.stderr, result.stderr
    result = kiln(kiln_cli, "run", engine, "--shapes", "x:1x3x8x8", expect=2)
    assert "--random" in result.stderr, result.stderr
    result = kiln(kiln_cli, "bench", engine, "--shapes", "x=1x3", expect=2)
    assert "NAME:DIMS" in result.stderr, result.stderr


def test_duration_keeps_running_past_the_iterations(kiln_cli, engine):
    doc = bench_json(kiln_cli, engine, "--iterations", 1, "--warmup", 0, "--duration", "0.3")
    assert doc["duration_s"] >= 0.3 and doc["iterations"] > 1
    result = kiln(kiln_cli, "bench", engine, "--duration", "soon", expect=2)
    assert "--duration" in result.stderr


def test_profile_without_n_in_json_lists_every_layer(kiln_cli, engine):
    doc = bench_json(kiln_cli, engine, "--iterations", 2, "--profile")
    profile = doc["profile"]
    names = [layer["name"] for layer in profile["all_layers"]]
    assert len(names) == profile["layers"] and "conv" in names
    assert len(profile["slowest_layers"]) == min(10, profile["layers"])
    doc = bench_json(kiln_cli, engine, "--iterations", 2, "--profile", "1")
    assert len(doc["profile"]["slowest_layers"]) == 1
    assert "--profile" in kiln(kiln_cli, "bench", engine, "--profile=0", expect=2).stderr


def test_export_times_writes_every_latency(kiln_cli, engine, workdir):
    path = workdir / "times.json"
    doc = bench_json(kiln_cli, engine, "--iterations", 7, "--export-times", path)
    times = json.loads(path.read_text())
    assert len(times["latency_ms"]) == 7 and all(t > 0 for t in times["latency_ms"])
    assert min(times["latency_ms"]) == pytest.approx(doc["latency_ms"]["min"])


def test_build_verbose_reports_phases_passes_layers_and_tactics(kiln_cli, onnx_path, workdir):
    out = kiln(kiln_cli, "build", onnx_path, "-o", workdir / "verbose.kiln", "--verbose").stdout
    assert re.search(r"phases: build [\d.]+ m?s", out), out
    assert "passes (" in out and "conv_fusion" in out, out
    assert re.search(r"layers: \d+ \(.*Conv 1", out), out
    assert "tactics:" in out, out


def test_build_time_has_sensible_precision(kiln_cli, onnx_path, workdir):
    out = kiln(kiln_cli, "build", onnx_path, "-o", workdir / "timed.kiln").stdout
    assert re.search(r", (\d+(\.\d)? ms|\d+\.\d\d s)$", out.strip()), out


def test_build_refuses_an_engine_file(kiln_cli, engine, workdir):
    result = kiln(kiln_cli, "build", engine, "-o", workdir / "again.kiln", expect=1)
    assert "this is a kiln engine, not an ONNX model" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def reference(kiln_cli, engine, workdir):
    out_dir = workdir / "reference"
    kiln(kiln_cli, "run", engine, "--random", "--seed", 3, "--output-dir", out_dir, "--save-inputs")
    return out_dir


def test_compare_with_saved_outputs(kiln_cli, engine, reference, workdir):
    x = f"x={reference / 'input.x.npy'}"
    out = kiln(kiln_cli, "compare", engine, "--reference", reference, "--input", x).stdout
    assert "PASS y: max abs" in out and "all outputs match" in out, out

    y = np.load(reference / "y.npy")
    np.savez(workdir / "good.npz", y=y)
    doc = json.loads(kiln(kiln_cli, "compare", engine, "--reference", workdir / "good.npz", "--input", x,
                          "--json").stdout)
    assert doc["passed"] and doc["outputs"][0]["max_abs_error"] <= 1e-5

    bad = y.copy()
    bad[0, 1] += 0.5
    np.savez(workdir / "bad.npz", y=bad)
    result = kiln(kiln_cli, "compare", engine, "--reference", workdir / "bad.npz", "--input", x, expect=1)
    assert "FAIL y" in result.stdout and "1 of 8 outside tolerance" in result.stdout, result.stdout
    # A loose tolerance lets it pass.
    kiln(kiln_cli, "compare", engine, "--reference", workdir / "bad.npz", "--input", x, "--atol", "0.6")

    np.savez(workdir / "wrong_shape.npz", y=y[:1])
    doc = json.loads(kiln(kiln_cli, "compare", engine, "--reference", workdir / "wrong_shape.npz", "--input", x,
                          "--json", expect=1).stdout)
    assert not doc["passed"] and "shape" in doc["outputs"][0]["problem"]


def test_compare_errors(kiln_cli, engine, reference, workdir):
    x = f"x={reference / 'input.x.npy'}"
    np.savez_compressed(workdir / "compressed.npz", y=np.load(reference / "y.npy"))
    result = kiln(kiln_cli, "compare", engine, "--reference", workdir / "compressed.npz", "--input", x, expect=1)
    assert "savez_compressed" in result.stderr, result.stderr
    np.savez(workdir / "other.npz", z=np.zeros(3, np.float32))
    result = kiln(kiln_cli, "compare", engine, "--reference", workdir / "other.npz", "--input", x, expect=1)
    assert "no array for output 'y'" in result.stderr and "z" in result.stderr, result.stderr
    assert "--reference" in kiln(kiln_cli, "compare", engine, "--input", x, expect=2).stderr
    assert "--atol" in kiln(kiln_cli, "compare", engine, "--reference", reference, "--atol", "-1", expect=2).stderr


@pytest.mark.parametrize("command", ["run", "bench", "compare"])
def test_bad_thread_counts_are_usage_errors(kiln_cli, engine, command):
    result = kiln(kiln_cli, command, engine, "--threads", "2000", expect=2)
    assert "--threads" in result.stderr, result.stderr
