"""Saved programs (TorchScript and ExportedProgram) run in a fresh process that has only torch and
a directory holding copies of libkiln_runtime.so and libkiln_torch.so: no kiln Python package
(or only kiln/runtime.py), no libkiln.so (the builder), no ONNX. Also what a user sees when the
runtime library is not loaded, LD_PRELOAD, and examples/deploy.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kiln.runtime as kr
import kiln_torch_testing as kt

REPO = kt.REPO

# Runs first in every child: the checks. (onnx may be installed in this environment; the child
# proves it is never imported. The kiln package is not on the child's path at all.)
_CHILD_PRELUDE = textwrap.dedent("""
    import json, os, sys

    def loaded_libraries():
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if ".so" in line.split()[-1]})

    def check_isolation(lib_dir):
        libs = loaded_libraries()
        kiln_libs = [p for p in libs if os.path.basename(p).startswith("libkiln")]
        assert not [p for p in libs if os.path.basename(p).startswith("libkiln.so")], libs
        assert not [p for p in libs if "protobuf" in p or "onnx" in p], libs
        for name in ("libkiln_runtime.so", "libkiln_torch.so"):
            where = [p for p in kiln_libs if os.path.basename(p) == name]
            assert where and all(os.path.dirname(p) == lib_dir for p in where), (name, kiln_libs)
        for module in ("onnx", "onnxruntime", "onnxscript", "google.protobuf", "kiln._capi"):
            assert module not in sys.modules, module
        kiln = sys.modules.get("kiln")
        assert kiln is None or not hasattr(kiln, "build_onnx"), "the kiln compiler package was imported"
        return kiln_libs
""")


# Children run as `python -S` with only torch's site-packages directory on PYTHONPATH: the venv
# running the tests has the kiln package installed (editable, by make), a deployment does not, and
# -S keeps site-packages' .pth files (which is how the editable install hooks in) from running.
_TORCH_SITE = str(Path(torch.__file__).resolve().parent.parent)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "LANG": "C.UTF-8"}
    paths = [extra.pop("PYTHONPATH")] if "PYTHONPATH" in extra else []
    env["PYTHONPATH"] = os.pathsep.join(paths + [_TORCH_SITE])
    env.update(extra)
    return env


def _python() -> list[str]:
    return [sys.executable, "-S"]


def _run_child(workdir: Path, chunks: list[str], env: dict[str, str], args: list[str] | None = None):
    script = workdir / "child.py"
    script.write_text("\n".join([_CHILD_PRELUDE] + [textwrap.dedent(c) for c in chunks]))
    return subprocess.run([*_python(), str(script), *(args or [])], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Saved programs, inputs, eager outputs, and a lib/ dir with the two runtime libraries."""
    kr.load_library(kt.torch_lib())
    root = tmp_path_factory.mktemp("deploy")
    lib = root / "lib"
    lib.mkdir()
    for name in ("libkiln_runtime.so", "libkiln_torch.so"):
        shutil.copy2(kt.lib_dir() / name, lib / name)
    models = root / "models"
    models.mkdir()

    data, mlp = kt.build_mlp_engine(seed=3)
    mlp_module = kt.EngineModule(kr.engine_from_bytes(data))
    x = torch.randn(5, 8)
    kt.save_programs(mlp_module, (torch.randn(2, 8),), models, "mlp")
    torch.save([x], models / "mlp_inputs.pt")
    torch.save((mlp(x),), models / "mlp_expected.pt")

    two_module = kt.TwoInputModule(kr.engine_from_bytes(kt.build_two_io_engine()))
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    kt.save_programs(two_module, (torch.randn(2, 3), torch.randn(2, 3)), models, "two")
    torch.save([a, b], models / "two_inputs.pt")
    torch.save(tuple(kt.two_input_module_eager(a, b)), models / "two_expected.pt")

    # A package with kiln/runtime.py alone (a namespace package: no kiln/__init__.py, no _capi).
    package = root / "pkg" / "kiln"
    package.mkdir(parents=True)
    shutil.copy2(REPO / "python" / "kiln" / "runtime.py", package / "runtime.py")
    return root


_RUN_BOTH_FORMATS = """
    import torch

    def compare(name, loaded):
        inputs = torch.load(f"models/{name}_inputs.pt")
        expected = torch.load(f"models/{name}_expected.pt")
        with torch.inference_mode():
            got = loaded(*inputs)
        got = (got,) if isinstance(got, torch.Tensor) else tuple(got)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            if e.dtype.is_floating_point:
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
            else:
                assert torch.equal(g, e)

    for name in ("mlp", "two"):
        compare(name, torch.jit.load(f"models/{name}.ts"))
        compare(name, torch.export.load(f"models/{name}.pt2").module())
"""


def test_torch_only_process_runs_both_formats(deployment):
    lib_dir = str(deployment / "lib")
    result = _run_child(deployment, [f"""
        import torch
        torch.ops.load_library({lib_dir + '/libkiln_torch.so'!r})
    """, _RUN_BOTH_FORMATS, f"""
        import importlib.util
        assert importlib.util.find_spec("kiln") is None  # the repo's python/ is not on the path
        print(json.dumps(check_isolation({lib_dir!r})))
    """], _clean_env())
    assert result.returncode == 0, result.stderr
    kiln_libs = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(os.path.basename(p) for p in kiln_libs) == ["libkiln_runtime.so", "libkiln_torch.so"]


def test_kiln_runtime_module_alone(deployment):
    """kiln/runtime.py copied alone: load_library via KILN_LIB_DIR, run, and export again (the
    fake class and fake kernel work without the rest of kiln)."""
    lib_dir = str(deployment / "lib")
    result = _run_child(deployment, [f"""
        import kiln.runtime as kr
        assert kr.load_library() == {lib_dir + '/libkiln_torch.so'!r}
        assert kr.runtime_version() and kr.engine_format_version()
        with kr.set_multi_device_safe_mode(True):
            assert kr.get_multi_device_safe_mode()
        assert not kr.get_multi_device_safe_mode()
    """, _RUN_BOTH_FORMATS, f"""
        module = torch.jit.load("models/mlp.ts")
        engine = module.engine
        x = torch.randn(3, 8)
        again = torch.export.export(torch.export.load("models/mlp.pt2").module(), (x,))
        torch.testing.assert_close(again.module()(x), kr.execute(engine, [x])[0])
        check_isolation({lib_dir!r})
        print("ok")
    """], _clean_env(PYTHONPATH=str(deployment / "pkg"), KILN_LIB_DIR=lib_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_ld_preload_registers_the_library(deployment):
    lib_dir = str(deployment / "lib")
    result = _run_child(deployment, [_RUN_BOTH_FORMATS, f"""
        check_isolation({lib_dir!r})
        print("ok")
    """], _clean_env(LD_PRELOAD=lib_dir + "/libkiln_torch.so"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_deploy_script(deployment, tmp_path):
    lib = deployment / "lib" / "libkiln_torch.so"
    for name in ("mlp", "two"):
        for suffix in (".ts", ".pt2"):
            out = tmp_path / f"{name}{suffix}.out.pt"
            result = subprocess.run(
                [*_python(), str(REPO / "examples" / "deploy.py"), f"models/{name}{suffix}",
                 f"models/{name}_inputs.pt", str(out), "--lib", str(lib)],
                cwd=deployment, env=_clean_env(), capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr
            assert "output 0" in result.stdout
            got = torch.load(out)
            expected = torch.load(deployment / "models" / f"{name}_expected.pt")
            for g, e in zip(got, expected):
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_missing_runtime_errors_users_see(deployment):
    """Loading saved programs without libkiln_torch.so: what the message says (docs/deployment.md)."""
    result = _run_child(deployment, ["""
        import torch
        try:
            torch.jit.load("models/mlp.ts")
        except RuntimeError as e:
            print("TS:", str(e).replace(chr(10), " "))
        try:
            torch.export.load("models/mlp.pt2")
        except RuntimeError as e:
            print("PT2:", str(e).replace(chr(10), " "))
        assert not [p for p in loaded_libraries() if "libkiln" in p]
        print("done")
    """], _clean_env())
    assert result.returncode == 0, result.stderr
    assert "TS:" in result.stdout and "Unknown type name '__torch__.torch.classes.kiln.Engine'" in result.stdout
    assert "PT2:" in result.stdout and "error when deserializing" in result.stdout
    assert "__torch__.torch.classes.kiln.Engine" in result.stderr  # logged by torch.export.load


def test_missing_library_file_from_kiln_runtime(deployment, tmp_path):
    result = _run_child(deployment, ["""
        import kiln.runtime as kr
        try:
            kr.engine_from_bytes(b"")
        except ImportError as e:
            print("ERR:", e)
    """], _clean_env(PYTHONPATH=str(deployment / "pkg"), KILN_LIB_DIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert f"libkiln_torch.so not found in {tmp_path}" in result.stdout


def test_second_copy_of_the_library_is_harmless(deployment):
    """Two copies loaded into one process (say one preloaded, one loaded by path): the second
    warns and stays unused instead of aborting the process."""
    lib_dir = str(deployment / "lib")
    result = _run_child(deployment, [f"""
        import torch
        torch.ops.load_library({str(kt.torch_lib())!r})
        torch.ops.load_library({lib_dir + '/libkiln_torch.so'!r})
    """, _RUN_BOTH_FORMATS, """
        print("ok")
    """], _clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert "already registered by another copy of libkiln_torch.so" in result.stderr
