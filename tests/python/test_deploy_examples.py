"""The C++ deployment examples, built with CMake against the kiln build under test and run:
examples/cpp_engine (the kiln runtime alone, no torch) and examples/cpp_runtime (libtorch +
libkiln_torch.so loading a TorchScript file). Outputs are compared with eager PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln.runtime as kr
import kiln_torch_testing as kt

REPO = kt.REPO


def _tool(name: str) -> str:
    for candidate in (Path(sys.executable).parent / name, REPO / ".venv" / "bin" / name):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} not found (make setup installs it into .venv)"
    return found


def _build_dir() -> Path:
    # lib/ of the build under test; its parent is the build directory the examples link against.
    return kt.lib_dir().parent


def _cmake_build(source: Path, binary: Path, *definitions: str) -> None:
    configure = [_tool("cmake"), "-S", str(source), "-B", str(binary), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", f"-DKILN_BUILD_DIR={_build_dir()}",
                 *definitions]
    result = subprocess.run(configure, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([_tool("cmake"), "--build", str(binary), "-j", "2"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _needed(binary: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.fixture(scope="module")
def mlp():
    return kt.build_mlp_engine(seed=5)


@pytest.fixture(scope="module")
def cpp_engine_example(tmp_path_factory):
    binary = tmp_path_factory.mktemp("cpp_engine_build")
    _cmake_build(REPO / "examples" / "cpp_engine", binary)
    return binary / "kiln_engine_example"


@pytest.fixture(scope="module")
def cpp_runtime_example(tmp_path_factory):
    kt.torch_lib()  # a clear message when libkiln_torch.so was not built
    binary = tmp_path_factory.mktemp("cpp_runtime_build")
    torch_dir = Path(torch.__file__).resolve().parent
    _cmake_build(REPO / "examples" / "cpp_runtime", binary, f"-DTORCH_DIR={torch_dir}",
                 f"-DTORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
    return binary / "kiln_torch_example"


def test_cpp_engine_needs_only_the_runtime(cpp_engine_example):
    needed = _needed(cpp_engine_example)
    assert "libkiln_runtime.so" in needed
    for forbidden in ("libkiln.so", "libtorch", "libc10", "protobuf", "onnx"):
        assert not any(n.startswith(forbidden) or forbidden in n for n in needed), (forbidden, needed)


def test_cpp_engine_runs_an_engine_file(cpp_engine_example, mlp, tmp_path):
    data, model = mlp
    engine_path = tmp_path / "mlp.kiln"
    engine_path.write_bytes(data)
    x = torch.randn(6, 8)
    np.save(tmp_path / "x.npy", x.numpy())
    outputs = tmp_path / "out"
    outputs.mkdir()
    result = subprocess.run([str(cpp_engine_example), str(engine_path), str(tmp_path / "x.npy"),
                             "--output-dir", str(outputs)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "backend cpu" in result.stdout and "y float32[6, 4]" in result.stdout
    got = torch.from_numpy(np.load(outputs / "0.npy"))
    torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)


def test_cpp_engine_pattern_inputs_and_errors(cpp_engine_example, mlp, tmp_path):
    data, model = mlp
    engine_path = tmp_path / "mlp.kiln"
    engine_path.write_bytes(data)
    result = subprocess.run([str(cpp_engine_example), str(engine_path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    # Without inputs: the smallest shape (batch 1) filled with (i % 8) * 0.25 - 1.
    x = (torch.arange(8, dtype=torch.float32) % 8) * 0.25 - 1.0
    expected = model(x.reshape(1, 8)).flatten()
    printed = [float(v) for v in result.stdout.split("y float32[1, 4]:")[1].split()[:4]]
    torch.testing.assert_close(torch.tensor(printed), expected, rtol=1e-4, atol=1e-5)

    np.save(tmp_path / "bad.npy", np.zeros((2, 8), dtype=np.float64))
    result = subprocess.run([str(cpp_engine_example), str(engine_path), str(tmp_path / "bad.npy")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "'<f8' but the engine input is float32" in result.stderr
    truncated = tmp_path / "truncated.kiln"
    truncated.write_bytes(data[: len(data) // 2])
    result = subprocess.run([str(cpp_engine_example), str(truncated)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "kiln error (" in result.stderr


def test_cpp_runtime_links_kiln_torch_despite_no_references(cpp_runtime_example):
    needed = _needed(cpp_runtime_example)
    assert "libkiln_torch.so" in needed, needed  # kept by -Wl,--no-as-needed


def test_cpp_runtime_runs_torchscript(cpp_runtime_example, mlp, tmp_path):
    kr.load_library(kt.torch_lib())
    data, model = mlp
    module = kt.EngineModule(kr.engine_from_bytes(data))
    ts, _ = kt.save_programs(module, (torch.randn(2, 8),), tmp_path, "mlp")
    x = torch.randn(7, 8)
    torch.save([x], tmp_path / "inputs.pt")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no LD_LIBRARY_PATH: RPATHs suffice
    result = subprocess.run([str(cpp_runtime_example), str(ts), str(tmp_path / "inputs.pt"),
                             str(tmp_path / "outputs.pt")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert f"kiln runtime {kr.runtime_version()}" in result.stdout
    assert "output 0 Float[7, 4]" in result.stdout
    (got,) = torch.load(tmp_path / "outputs.pt")
    torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-5)


def test_cpp_runtime_two_inputs_and_bad_input(cpp_runtime_example, tmp_path):
    kr.load_library(kt.torch_lib())
    module = kt.TwoInputModule(kr.engine_from_bytes(kt.build_two_io_engine()))
    ts, _ = kt.save_programs(module, (torch.randn(2, 3), torch.randn(2, 3)), tmp_path, "two")
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    torch.save([a, b], tmp_path / "inputs.pt")
    result = subprocess.run([str(cpp_runtime_example), str(ts), str(tmp_path / "inputs.pt"),
                             str(tmp_path / "outputs.pt")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = torch.load(tmp_path / "outputs.pt")
    expected = kt.two_input_module_eager(a, b)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1], expected[1])

    torch.save([a.double(), b], tmp_path / "bad.pt")
    result = subprocess.run([str(cpp_runtime_example), str(ts), str(tmp_path / "bad.pt")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "input 0 ('a'): expected dtype float32, got Double" in result.stderr


def test_cpp_runtime_without_no_as_needed_loses_the_registrations(cpp_runtime_example, mlp, tmp_path):
    """Why the example links libkiln_torch.so inside -Wl,--no-as-needed: linked with --as-needed
    the library is dropped (nothing references it) and loading the program fails."""
    kr.load_library(kt.torch_lib())
    data, _ = mlp
    ts, _ = kt.save_programs(kt.EngineModule(kr.engine_from_bytes(data)), (torch.randn(2, 8),), tmp_path, "m",
                             dynamic_batch=False)
    torch.save([torch.randn(2, 8)], tmp_path / "inputs.pt")
    obj = cpp_runtime_example.parent / "CMakeFiles" / "kiln_torch_example.dir" / "main.cpp.o"
    torch_lib_dir = Path(torch.__file__).resolve().parent / "lib"
    dropped = tmp_path / "as_needed_example"
    subprocess.run(["g++", "-o", str(dropped), str(obj), "-Wl,--as-needed", str(kt.torch_lib()),
                    str(torch_lib_dir / "libtorch.so"), str(torch_lib_dir / "libtorch_cpu.so"),
                    str(torch_lib_dir / "libc10.so"), f"-Wl,-rpath,{torch_lib_dir}:{kt.lib_dir()}"],
                   check=True, timeout=300)
    assert "libkiln_torch.so" not in _needed(dropped)
    result = subprocess.run([str(dropped), str(ts), str(tmp_path / "inputs.pt")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "Unknown type name '__torch__.torch.classes.kiln.Engine'" in result.stderr
    # LD_PRELOAD brings the registrations back without relinking.
    result = subprocess.run([str(dropped), str(ts), str(tmp_path / "inputs.pt")], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "LD_PRELOAD": str(kt.torch_lib())})
    assert result.returncode == 0, result.stderr
