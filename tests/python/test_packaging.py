"""The Python package as pip builds it: a wheel carries kiln's libraries in kiln/lib/, declares
the torch.compile backend entry point, and works from outside the repository with no
KILN_LIB_DIR (the libraries it loads are its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(build_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, KILN_PREBUILT_LIB_DIR=str(build_dir / "lib"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(REPO)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(out.glob("kiln-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_libraries_and_entry_point(wheel, build_dir):
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("kiln/__init__.py", "kiln/runtime.py", "kiln/_compile.py", "kiln/lib/libkiln_runtime.so",
                     "kiln/lib/libkiln.so"):
        assert expected in names, (expected, names)
    for optional in ("libkiln_torch.so", "libkiln_plugins.so", "libkiln_backend_cuda.so", "libkiln_cpu_onednn.so"):
        if (build_dir / "lib" / optional).is_file():
            assert f"kiln/lib/{optional}" in names, (optional, names)
    assert "-none-any" not in wheel.name, "a wheel with shared libraries must be platform-tagged"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[torch_dynamo_backends]" in text and "kiln = kiln.torch_backend:kiln_backend" in text


def test_installed_package_uses_its_own_libraries(wheel, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                             str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    script = (
        "import importlib.metadata, kiln\n"
        "print(kiln.__file__)\n"
        "print(kiln.runtime_version())\n"
        "print([line for line in open('/proc/self/maps') if 'libkiln_runtime' in line][0].split()[-1])\n"
        "eps = importlib.metadata.entry_points(group='torch_dynamo_backends')\n"
        "print(any(ep.name == 'kiln' and ep.value == 'kiln.torch_backend:kiln_backend' for ep in eps))\n"
        # kiln's plugin library beside the runtime loads against it (RUNPATH $ORIGIN)
        "import os\n"
        "plugins = os.path.join(os.path.dirname(kiln.__file__), 'lib', 'libkiln_plugins.so')\n"
        "print(not os.path.exists(plugins) or kiln.load_plugin_library(plugins) == plugins)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_LIB_DIR", "PYTHONPATH", "KILN_BUILD_DIR")}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module_file, version, runtime_path, has_entry_point, plugins_load = out.stdout.split("\n")[:5]
    assert module_file.startswith(str(target)), module_file
    assert version.count(".") == 2
    assert runtime_path.startswith(str(target / "kiln" / "lib")), runtime_path
    assert has_entry_point == "True"
    assert plugins_load == "True"
