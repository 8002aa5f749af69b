"""A CPU deployment needs no CUDA library (issue 14, point 4): libkiln_runtime.so links none, the
cuda backend is libkiln_backend_cuda.so beside it, loaded on the first cuda engine, and a process
without it (and without the CUDA libraries on its path) builds and runs CPU engines, and gets a
clear error naming the library for a cuda engine. `kiln --version` loads no CUDA library."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from onnx import TensorProto, helper

import kiln
import kiln_testing as kt

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")).resolve()
LIB_DIR = Path(os.environ.get("KILN_LIB_DIR", BUILD_DIR / "lib"))
KILN_CLI = BUILD_DIR / "bin" / "kiln"
BACKEND_LIBRARY = "libkiln_backend_cuda.so"
# File name prefixes of the CUDA libraries (runtime, cuBLAS/cuBLASLt, cuDNN, driver) and kiln's
# cuda backend: none may be in a CPU process.
CUDA_LIBRARIES = ("libcudart", "libcublas", "libcudnn", "libcuda.so", BACKEND_LIBRARY)


def _is_cuda_library(path: str) -> bool:
    return os.path.basename(path).startswith(CUDA_LIBRARIES)


def _needed(library: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(library)], check=True, capture_output=True, text=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def _relu_model(target_shape=(2, 3)):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(target_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(target_shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _cuda_engine_bytes() -> bytes | None:
    """A cross-compiled cuda engine (no GPU needed), or None where this kiln cannot make one."""
    if not kt.cuda_backend_present():
        return None
    try:
        return kiln.build_onnx(_relu_model(), target="cuda", cuda_arch=90, kernel_cache="off")
    except kiln.KilnError:
        return None


def test_the_runtime_links_no_cuda_library():
    runtime = LIB_DIR / "libkiln_runtime.so"
    needed = _needed(runtime)
    assert "libstdc++.so.6" in needed, needed  # readelf read a real library
    assert not [name for name in needed if _is_cuda_library(name)], needed
    backend = LIB_DIR / BACKEND_LIBRARY
    if backend.exists():  # CUDA builds: the backend links the CUDA libraries and the runtime
        backend_needed = _needed(backend)
        assert "libkiln_runtime.so" in backend_needed, backend_needed
        assert "libcudart.so.13" in backend_needed, backend_needed
        assert "libkiln.so" not in backend_needed, backend_needed


def test_kiln_version_loads_no_cuda_library():
    if not KILN_CLI.exists():
        pytest.skip(f"{KILN_CLI} not built")
    # LD_DEBUG=files: the loader reports every library it opens, linked or dlopened.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    done = subprocess.run([str(KILN_CLI), "--version"], env={**env, "LD_DEBUG": "files"}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kiln "), done.stdout
    opened = {line.split("file=", 1)[1].split()[0] for line in done.stderr.splitlines() if "file=" in line}
    assert "libkiln_runtime.so" in opened, done.stderr[:2000]  # the report is what we think it is
    assert not [name for name in opened if _is_cuda_library(name)], sorted(opened)


# Run in a child whose libraries are copies without libkiln_backend_cuda.so (or with a broken one)
# and whose LD_LIBRARY_PATH has no CUDA directory: builds and runs a CPU engine, checks that no
# CUDA library is mapped, then loads the cuda engine (when given) and prints its error.
_CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    import kiln

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    x = np.array([[-1, 2, -3], [4, -5, 6]], dtype=np.float32)
    y = engine.run({"x": x})["y"]
    assert np.array_equal(y, np.maximum(x, 0)), y
    with open("/proc/self/maps") as maps:
        mapped = sorted({line.split()[-1] for line in maps if ".so" in line.split()[-1]})
    report = {"mapped": mapped, "cuda_error": None}
    if len(sys.argv) > 1:
        try:
            kiln.Engine(open(sys.argv[1], "rb").read())
            report["cuda_error"] = "loaded"
        except kiln.KilnError as error:
            report["cuda_error"] = [type(error).__name__, str(error)]
    print(json.dumps(report))
""")


def _run_child(lib_dir: Path, tmp_path: Path, cuda_engine: bytes | None) -> dict:
    import json

    args = [sys.executable, "-c", _CHILD]
    if cuda_engine is not None:
        engine_path = tmp_path / "relu_cuda.kiln"
        engine_path.write_bytes(cuda_engine)
        args.append(str(engine_path))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    kept = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":")
            if d and "cuda" not in d.lower() and "nvidia" not in d.lower()]
    if kept:
        env["LD_LIBRARY_PATH"] = ":".join(kept)
    env["KILN_LIB_DIR"] = str(lib_dir)
    env["PYTHONPATH"] = str(REPO / "python")
    done = subprocess.run(args, env=kt.python_child_env(env), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    kiln_libs = [p for p in report["mapped"] if os.path.basename(p).startswith("libkiln")]
    assert kiln_libs and all(os.path.dirname(p) == str(lib_dir) for p in kiln_libs), kiln_libs
    return report


def _lib_dir_without_the_cuda_backend(tmp_path: Path) -> Path:
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for name in ("libkiln_runtime.so", "libkiln.so"):
        shutil.copy2(LIB_DIR / name, lib_dir / name)
    return lib_dir


def test_a_cpu_engine_runs_without_the_cuda_backend_and_a_cuda_engine_names_it(tmp_path):
    cuda_engine = _cuda_engine_bytes()
    lib_dir = _lib_dir_without_the_cuda_backend(tmp_path)
    report = _run_child(lib_dir, tmp_path, cuda_engine)
    assert not [p for p in report["mapped"] if _is_cuda_library(p)], report["mapped"]
    if cuda_engine is None:
        return  # a kiln without CUDA (or NVRTC) makes no cuda engine: the CPU half is the test
    kind, message = report["cuda_error"]
    assert kind == "DeviceError", report["cuda_error"]
    for part in ("engine targets cuda sm_90", "cannot load its cuda backend", str(lib_dir / BACKEND_LIBRARY),
                 "cannot open shared object file", "libcudnn.so.9"):
        assert part in message, (part, message)


def test_a_broken_cuda_backend_library_is_reported_with_the_loaders_message(tmp_path):
    cuda_engine = _cuda_engine_bytes()
    if cuda_engine is None:
        pytest.skip("this kiln makes no cuda engines (built without CUDA, or no NVRTC)")
    lib_dir = _lib_dir_without_the_cuda_backend(tmp_path)
    (lib_dir / BACKEND_LIBRARY).write_bytes(b"not a shared library")
    report = _run_child(lib_dir, tmp_path, cuda_engine)
    kind, message = report["cuda_error"]
    assert kind == "DeviceError", report["cuda_error"]
    assert str(lib_dir / BACKEND_LIBRARY) in message, message
    assert "file too short" in message or "invalid ELF header" in message, message
    assert not [p for p in report["mapped"] if _is_cuda_library(p)], report["mapped"]
