"""The kiln CLI (build/run/inspect/bench) through subprocess on a small CNN."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_bytes import fake_cubin, with_kernel_modules
from kiln_testing import run_ort

COMMANDS = ["build", "run", "inspect", "bench", "compare"]


def small_cnn(batch="batch") -> onnx.ModelProto:
    """x [batch, 3, 8, 8] -> Conv(4, 3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> y."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        ])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def kiln(cli, *args, expect=0):
    result = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == expect, (
        f"kiln {' '.join(map(str, args))}: exit {result.returncode}, expected {expect}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def static_model(workdir):
    model = small_cnn(batch=2)
    path = workdir / "static.onnx"
    onnx.save(model, str(path))
    return model, path


@pytest.fixture(scope="module")
def static_engine(kiln_cli, static_model, workdir):
    path = workdir / "static.kiln"
    result = kiln(kiln_cli, "build", static_model[1], "-o", path, "--metadata", '{"owner": "tests", "n": 3}')
    assert path.is_file() and path.stat().st_size > 0
    assert "static.kiln" in result.stdout
    return path


@pytest.fixture(scope="module")
def dynamic_engine(kiln_cli, workdir):
    onnx_path = workdir / "dynamic.onnx"
    onnx.save(small_cnn(), str(onnx_path))
    path = workdir / "dynamic.kiln"
    kiln(kiln_cli, "build", onnx_path, "-o", path,
         "--profile", "x:min=1x3x8x8,opt=3x3x8x8,max=6x3x8x8", "--kernel-cache", "off")
    return path


def test_run_with_npy_input_matches_onnxruntime(kiln_cli, static_model, static_engine, workdir):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.save(workdir / "x.npy", x)
    out_dir = workdir / "run_out"
    result = kiln(kiln_cli, "run", static_engine, "--input", f"x={workdir / 'x.npy'}",
                  "--output-dir", out_dir)
    got = np.load(out_dir / "y.npy")
    want = run_ort(static_model[0], {"x": x})["y"]
    assert got.dtype == np.float32 and got.shape == (2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert "y: float32 [2, 4]" in result.stdout, result.stdout
    assert f"{want.flat[0]:.4g}"[:4] in result.stdout, result.stdout


def test_run_converts_float64_files_with_a_note(kiln_cli, static_model, static_engine, workdir):
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8))
    np.save(workdir / "x64.npy", x)
    out_dir = workdir / "run64"
    result = kiln(kiln_cli, "run", static_engine, f"--input=x={workdir / 'x64.npy'}",
                  "--output-dir", out_dir)
    assert "converting" in result.stderr and "float64" in result.stderr
    want = run_ort(static_model[0], {"x": x.astype(np.float32)})["y"]
    np.testing.assert_allclose(np.load(out_dir / "y.npy"), want, rtol=1e-5, atol=1e-5)


def _identity_engine(kiln_cli, workdir, elem, name):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", elem, [3])],
                              [helper.make_tensor_value_info("y", elem, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, workdir / f"{name}.onnx")
    kiln(kiln_cli, "build", workdir / f"{name}.onnx", "-o", workdir / f"{name}.kiln")
    return workdir / f"{name}.kiln"


def test_run_reads_and_writes_unsigned_npy_files(kiln_cli, workdir):
    engine = _identity_engine(kiln_cli, workdir, TensorProto.UINT64, "u64")
    x = np.array([2**64 - 1, 2**63, 5], dtype=np.uint64)
    np.save(workdir / "u64.npy", x)
    kiln(kiln_cli, "run", engine, f"--input=x={workdir / 'u64.npy'}", "--output-dir", workdir / "u64_out")
    got = np.load(workdir / "u64_out" / "y.npy")
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, x)
    # An int64 file converts the way numpy's astype does (wrapping), exact above 2**53.
    signed = np.array([-1, 2**62 + 1, 7], dtype=np.int64)
    np.save(workdir / "i64.npy", signed)
    result = kiln(kiln_cli, "run", engine, f"--input=x={workdir / 'i64.npy'}", "--output-dir", workdir / "i64_out")
    assert "converting" in result.stderr and "uint64" in result.stderr
    np.testing.assert_array_equal(np.load(workdir / "i64_out" / "y.npy"), signed.astype(np.uint64))


def test_run_takes_uint16_files_as_bfloat16_bits(kiln_cli, workdir):
    engine = _identity_engine(kiln_cli, workdir, TensorProto.BFLOAT16, "bf16")
    bits = np.array([0x3F80, 0xC060, 0], dtype=np.uint16)  # 1.0, -3.5, 0
    np.save(workdir / "bf16.npy", bits)
    kiln(kiln_cli, "run", engine, f"--input=x={workdir / 'bf16.npy'}", "--output-dir", workdir / "bf16_out")
    np.testing.assert_array_equal(np.load(workdir / "bf16_out" / "y.npy"), bits)


def test_run_random_uses_opt_dims_and_saves_inputs(kiln_cli, dynamic_engine, workdir):
    out_dir = workdir / "random_out"
    kiln(kiln_cli, "run", dynamic_engine, "--random", "--seed", 7, "--output-dir", out_dir,
         "--save-inputs")
    x = np.load(out_dir / "input.x.npy")
    assert x.shape == (3, 3, 8, 8)  # opt batch
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() < 1 and x.std() > 0.1
    want = run_ort(small_cnn(), {"x": x})["y"]
    np.testing.assert_allclose(np.load(out_dir / "y.npy"), want, rtol=1e-5, atol=1e-5)
    # Same seed, same inputs; another seed, others.
    again = workdir / "random_again"
    kiln(kiln_cli, "run", dynamic_engine, "--random", "--seed", 7, "--output-dir", again, "--save-inputs")
    np.testing.assert_array_equal(np.load(again / "input.x.npy"), x)
    other = workdir / "random_other"
    kiln(kiln_cli, "run", dynamic_engine, "--random", "--seed", 8, "--output-dir", other, "--save-inputs")
    assert not np.array_equal(np.load(other / "input.x.npy"), x)


def test_run_no_cuda_graph_is_accepted_and_changes_no_result(kiln_cli, dynamic_engine, workdir):
    # A CPU engine has no graph to skip: the flag is accepted and the outputs are identical.
    runs = {}
    for name, flags in {"graph": [], "eager": ["--no-cuda-graph"]}.items():
        out_dir = workdir / f"no_graph_{name}"
        kiln(kiln_cli, "run", dynamic_engine, "--random", "--seed", 4, "--output-dir", out_dir, *flags)
        runs[name] = np.load(out_dir / "y.npy")
    np.testing.assert_array_equal(runs["eager"], runs["graph"])


def test_run_dynamic_engine_at_another_batch(kiln_cli, dynamic_engine, workdir):
    x = np.random.default_rng(3).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.save(workdir / "x5.npy", x)
    out_dir = workdir / "batch5"
    kiln(kiln_cli, "run", dynamic_engine, "--input", f"x={workdir / 'x5.npy'}", "--output-dir", out_dir)
    np.testing.assert_allclose(np.load(out_dir / "y.npy"), run_ort(small_cnn(), {"x": x})["y"],
                               rtol=1e-5, atol=1e-5)


def test_inspect_text(kiln_cli, static_engine):
    out = kiln(kiln_cli, "inspect", static_engine).stdout
    for expected in ("format version: 1.1", "producer:", "target:", "cpu", "precision:", "float32",
                     "x: float32 [2, 3, 8, 8]", "y: float32 [2, 4]", "memory plan:", "weights:",
                     '"owner"'):
        assert expected in out, f"{expected!r} not in:\n{out}"
    assert "Conv" in out or "conv" in out.lower()


def test_inspect_json(kiln_cli, static_engine, dynamic_engine):
    doc = json.loads(kiln(kiln_cli, "inspect", static_engine, "--json").stdout)
    assert doc["format_version"] == "1.1"
    assert doc["target"]["backend"] == "cpu"
    assert doc["precision"] == "float32"
    assert [b["name"] for b in doc["inputs"]] == ["x"]
    assert doc["inputs"][0]["shape"] == [2, 3, 8, 8]
    assert doc["outputs"][0] == {**doc["outputs"][0], "name": "y", "dtype": "float32", "shape": [2, 4]}
    assert doc["metadata"]["owner"] == "tests" and doc["metadata"]["n"] == 3
    assert len(doc["layers"]) >= 1
    for layer in doc["layers"]:
        assert layer["op"] and isinstance(layer["inputs"], list) and layer["outputs"]
    assert doc["weights"]["bytes"] >= (4 * 3 * 3 * 3 + 4) * 4
    assert doc["memory_plan"]["static"] is True
    assert isinstance(doc["plugins"], list)

    dyn = json.loads(kiln(kiln_cli, "inspect", "--json", dynamic_engine).stdout)
    assert dyn["inputs"][0]["shape"] == [None, 3, 8, 8]
    assert dyn["inputs"][0]["ranges"][0] == {"min": 1, "opt": 3, "max": 6}
    assert dyn["outputs"][0]["shape"][0] is None


GROUP_A_SOURCE = 'extern "C" __global__ void group_a(float* y) { y[0] = 1.0f; }\n'


@pytest.fixture(scope="module")
def kernels_engine(static_engine, workdir):
    """The static engine as a cuda engine carrying two generated modules (fake cubins: inspect
    does not load them), group_a used by layers 0 and 1, group_b by none."""
    data = with_kernel_modules(
        static_engine.read_bytes(),
        [{"name": "group_a", "source": GROUP_A_SOURCE, "cubin": fake_cubin(200)},
         {"name": "group_b", "compiler": "nvrtc 13.5", "cubin": fake_cubin(64)}],
        {0: "group_a", 1: "group_a"})
    path = workdir / "kernels.kiln"
    path.write_bytes(data)
    return path


def test_inspect_lists_kernel_modules(kiln_cli, kernels_engine):
    layers = json.loads(kiln(kiln_cli, "inspect", kernels_engine, "--json").stdout)["layers"]
    users = f"layers (2): {layers[0]['name']} {layers[1]['name']}"
    out = kiln(kiln_cli, "inspect", kernels_engine).stdout
    assert "format version: 1.1" in out and "target:         cuda, sm_90" in out, out
    assert "kernels (2):" in out, out
    assert f"group_a: sm_90, nvrtc 13.0, cubin 200 bytes, source {len(GROUP_A_SOURCE)} bytes; {users}" in out
    assert "group_b: sm_90, nvrtc 13.5, cubin 64 bytes, source 0 bytes; layers (0):" in out, out
    assert "__global__" not in out  # sources only on request

    only = kiln(kiln_cli, "inspect", kernels_engine, "--kernels").stdout
    assert only.startswith(f"engine: {kernels_engine} (cuda, sm_90)\nkernels (2):\n"), only
    assert users in only and "format version" not in only and "memory plan" not in only, only
    with_source = kiln(kiln_cli, "inspect", kernels_engine, "--kernels", "--source").stdout
    assert f"---- source of group_a ----\n{GROUP_A_SOURCE}  ---- end of group_a ----" in with_source

    # --kernel NAME prints the source as is, so it can be saved and compiled.
    assert kiln(kiln_cli, "inspect", kernels_engine, "--kernel", "group_a").stdout == GROUP_A_SOURCE
    missing = kiln(kiln_cli, "inspect", kernels_engine, "--kernel", "group_c", expect=1)
    assert "no kernel module 'group_c' (its modules: 'group_a', 'group_b')" in missing.stderr

    doc = json.loads(kiln(kiln_cli, "inspect", kernels_engine, "--json").stdout)
    assert doc["kernels"] == [
        {"name": "group_a", "sm_arch": 90, "compiler": "nvrtc 13.0", "cubin_bytes": 200,
         "source_bytes": len(GROUP_A_SOURCE), "layers": [layers[0]["name"], layers[1]["name"]]},
        {"name": "group_b", "sm_arch": 90, "compiler": "nvrtc 13.5", "cubin_bytes": 64,
         "source_bytes": 0, "layers": []}]
    assert layers[0]["attributes"]["kiln_kernel"] == "group_a"
    sources = json.loads(kiln(kiln_cli, "inspect", kernels_engine, "--json", "--source").stdout)
    assert [k["source"] for k in sources["kernels"]] == [GROUP_A_SOURCE, ""]
    one = json.loads(kiln(kiln_cli, "inspect", kernels_engine, "--json", "--kernel", "group_b").stdout)
    assert one["name"] == "group_b" and one["source"] == "" and one["cubin_bytes"] == 64


def test_inspect_engine_without_kernels(kiln_cli, static_engine):
    assert "kernels (0):" in kiln(kiln_cli, "inspect", static_engine).stdout
    assert json.loads(kiln(kiln_cli, "inspect", static_engine, "--json").stdout)["kernels"] == []
    out = kiln(kiln_cli, "inspect", static_engine, "--kernels").stdout
    assert out.endswith("kernels (0):\n"), out


def test_bench(kiln_cli, static_engine):
    out = kiln(kiln_cli, "bench", static_engine, "--iterations", 20, "--warmup", 2).stdout
    for expected in ("p50", "p90", "p99", "min", "mean", "throughput", "20 iterations"):
        assert expected in out, out
    doc = json.loads(kiln(kiln_cli, "bench", static_engine, "--iterations", 10, "--json").stdout)
    lat = doc["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    assert doc["iterations"] == 10 and doc["throughput_per_s"] > 0


# The static engine's Conv (Relu fused) at batch 2: x, w, b and its output, in bytes.
CONV_BYTES = 4 * (2 * 3 * 8 * 8 + 4 * 3 * 3 * 3 + 4 + 2 * 4 * 8 * 8)


def test_bench_profile_lists_layers(kiln_cli, static_engine):
    out = kiln(kiln_cli, "bench", static_engine, "--iterations", 3, "--profile", 2).stdout
    assert "layer profile" in out and "op Conv" in out, out
    conv_line = next(line for line in out.splitlines() if line.endswith("Conv 'conv'"))
    assert f" {CONV_BYTES / 1e6:.3f} MB " in conv_line and "GB/s" in conv_line, out
    # A CPU engine has no DRAM peak to compare with.
    assert "peak DRAM bandwidth" not in out and "%" not in conv_line, out


def test_bench_profile_json_has_bytes_and_bandwidth(kiln_cli, static_engine):
    doc = json.loads(kiln(kiln_cli, "bench", static_engine, "--iterations", 3, "--profile", 1, "--json").stdout)
    profile = doc["profile"]
    assert len(profile["slowest_layers"]) == 1
    assert {op["op"] for op in profile["ops"]} >= {"Conv", "GlobalAveragePool"}
    assert sum(op["layers"] for op in profile["ops"]) == profile["layers"]
    assert sum(op["bytes"] for op in profile["ops"]) == profile["bytes"]
    conv = next(op for op in profile["ops"] if op["op"] == "Conv")
    assert conv["bytes"] == CONV_BYTES
    assert conv["gb_per_s"] == pytest.approx(conv["bytes"] / (conv["ms"] * 1e6), rel=1e-6)
    assert "peak_dram_gb_per_s" not in profile


@pytest.mark.parametrize("flags", [["--host-io"], ["--no-cuda-graph"], ["--host-io", "--no-cuda-graph"]])
def test_bench_modes(kiln_cli, static_engine, flags):
    doc = json.loads(kiln(kiln_cli, "bench", static_engine, "--iterations", 5, "--json", *flags).stdout)
    assert doc["iterations"] == 5 and doc["latency_ms"]["min"] > 0


@pytest.mark.parametrize("command", COMMANDS)
def test_help_per_command(kiln_cli, command):
    for flag in ("--help", "-h"):
        result = kiln(kiln_cli, command, flag)
        assert result.stdout.startswith(f"usage: kiln {command}"), result.stdout
        assert result.stderr == ""


def test_top_level_help_and_version(kiln_cli):
    out = kiln(kiln_cli, "--help").stdout
    for command in COMMANDS:
        assert command in out
    assert "kiln" in kiln(kiln_cli, "--version").stdout
    result = kiln(kiln_cli, expect=2)
    assert "usage: kiln" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["frobnicate"], "kiln: error: unknown command 'frobnicate'"),
    (["build", "m.onnx", "-o", "x.kiln", "--bogus"], "kiln build: error: unknown option '--bogus'"),
    (["build", "m.onnx"], "kiln build: error: missing -o"),
    (["build", "m.onnx", "-o", "x.kiln", "--fp16", "--bf16"], "kiln build: error: conflicting precision"),
    (["build", "m.onnx", "-o", "x.kiln", "--target", "tpu"], "kiln build: error: --target"),
    (["build", "m.onnx", "-o", "x.kiln", "--workspace", "lots"], "kiln build: error: --workspace"),
    (["build", "m.onnx", "-o", "x.kiln", "--profile", "x:min=1x3,max=oops"], "kiln build: error: --profile"),
    (["build", "m.onnx", "-o", "x.kiln", "--metadata", "[1, 2]"], "kiln build: error: --metadata"),
    (["build", "m.onnx", "-o", "x.kiln", "--kernel-cache"],
     "kiln build: error: option --kernel-cache needs a value"),
    (["build", "m.onnx", "-o", "x.kiln", "--kernel-cache", ""], "kiln build: error: --kernel-cache"),
    (["run", "e.kiln", "--input"], "kiln run: error: option --input needs a value"),
    (["run", "e.kiln", "--input", "no_equals_sign"], "kiln run: error: --input"),
    (["run"], "kiln run: error: missing the engine"),
    (["run", "a.kiln", "b.kiln"], "kiln run: error: unexpected argument 'b.kiln'"),
    (["inspect", "e.kiln", "--json=yes"], "kiln inspect: error: option --json takes no value"),
    (["inspect", "e.kiln", "--source"], "kiln inspect: error: --source needs --kernels or --json"),
    (["inspect", "e.kiln", "--kernel"], "kiln inspect: error: option --kernel needs a value"),
    (["inspect", "e.kiln", "--kernel", "g", "--kernels"], "kiln inspect: error: --kernel NAME"),
    (["inspect", "e.kiln", "--kernels", "--json"], "kiln inspect: error: --json always lists"),
    (["bench", "e.kiln", "--iterations", "0"], "kiln bench: error: --iterations"),
    (["bench", "e.kiln", "--warmup", "-3"], "kiln bench: error: --warmup"),
])
def test_usage_errors_exit_2(kiln_cli, args, message):
    result = kiln(kiln_cli, *args, expect=2)
    assert message in result.stderr, result.stderr
    assert result.stdout == ""


def test_run_without_inputs_names_them(kiln_cli, static_engine):
    result = kiln(kiln_cli, "run", static_engine, expect=2)
    assert "'x'" in result.stderr and "--random" in result.stderr, result.stderr


def test_runtime_errors_exit_1(kiln_cli, static_engine, workdir):
    missing = workdir / "missing.kiln"
    for command in ("run", "inspect", "bench"):
        result = kiln(kiln_cli, command, missing, expect=1)
        assert result.stderr.startswith(f"kiln {command}: error: ") and str(missing) in result.stderr

    corrupt = workdir / "corrupt.kiln"
    data = bytearray(static_engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    for command in ("run", "inspect"):
        result = kiln(kiln_cli, command, corrupt, "--random" if command == "run" else "--json", expect=1)
        assert "checksum" in result.stderr.lower(), result.stderr

    result = kiln(kiln_cli, "build", workdir / "absent.onnx", "-o", workdir / "o.kiln", expect=1)
    assert "kiln build: error:" in result.stderr and "absent.onnx" in result.stderr

    bad_npy = workdir / "bad.npy"
    bad_npy.write_bytes(b"definitely not numpy")
    result = kiln(kiln_cli, "run", static_engine, "--input", f"x={bad_npy}", expect=1)
    assert str(bad_npy) in result.stderr, result.stderr

    np.save(workdir / "wrong_shape.npy", np.zeros((2, 3, 9, 9), np.float32))
    result = kiln(kiln_cli, "run", static_engine, "--input", f"x={workdir / 'wrong_shape.npy'}", expect=1)
    assert "[2, 3, 8, 8]" in result.stderr and "[2, 3, 9, 9]" in result.stderr, result.stderr

    result = kiln(kiln_cli, "run", static_engine, "--input", f"z={workdir / 'x.npy'}", expect=1)
    assert "'z'" in result.stderr and "x" in result.stderr, result.stderr


def test_build_unsupported_op_exits_1_naming_it(kiln_cli, workdir):
    graph = helper.make_graph([helper.make_node("ImageDecoder", ["x"], ["y"], name="the_decoder")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [16])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    path = workdir / "decoder.onnx"
    onnx.save(model, str(path))
    result = kiln(kiln_cli, "build", path, "-o", workdir / "decoder.kiln", expect=1)
    assert "ImageDecoder" in result.stderr and "the_decoder" in result.stderr, result.stderr
    assert not (workdir / "decoder.kiln").exists()


def test_build_explain_lists_every_pass(kiln_cli, static_model, workdir):
    # A cpu engine is not grouped, but --explain still reports the passes and says so.
    path = workdir / "explained.kiln"
    result = kiln(kiln_cli, "build", static_model[1], "-o", path, "--explain")
    assert "passes:" in result.stdout
    for name in ("constant_folding", "conv_fusion", "matmul_fusion"):
        assert f"  {name}: " in result.stdout, result.stdout
    assert "cpu engines are not grouped" in result.stdout
    info = json.loads(kiln(kiln_cli, "inspect", "--json", path).stdout)
    explain = info["metadata"]
    assert "explain" in explain["kiln_build"], explain
