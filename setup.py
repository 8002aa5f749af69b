"""Puts kiln's native libraries into the package (kiln/lib/) when it is built as a wheel.

The libraries come from KILN_PREBUILT_LIB_DIR when set (an existing build's lib/ directory),
else from a CMake Release build of this checkout in build-pip/ (CUDA and the torch library
included when the machine has them). KILN_SKIP_NATIVE=1 packages Python files only, as the
editable install `make` does (the package then finds the libraries in <repo>/build/lib)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

REPO = Path(__file__).resolve().parent
# libkiln_backend_cuda.so (CUDA builds) sits beside libkiln_runtime.so, which loads it on the first
# cuda engine.
LIBRARIES = ("libkiln_runtime.so", "libkiln_backend_cuda.so", "libkiln_cpu_onednn.so", "libkiln.so", "libkiln_torch.so", "libkiln_plugins.so")


def native_lib_dir() -> Path:
    prebuilt = os.environ.get("KILN_PREBUILT_LIB_DIR")
    if prebuilt:
        return Path(prebuilt)
    build = REPO / "build-pip"
    cmake = shutil.which("cmake") or "cmake"
    configure = [cmake, "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DKILN_BUILD_TESTS=OFF",
                 f"-DPython3_EXECUTABLE={sys.executable}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True)
    subprocess.run([cmake, "--build", str(build), "-j", str(os.cpu_count() or 2)], check=True)
    return build / "lib"


class BuildWithLibraries(build_py):
    def run(self):
        super().run()
        if os.environ.get("KILN_SKIP_NATIVE") == "1" or self.editable_mode:
            return
        source = native_lib_dir()
        target = Path(self.build_lib) / "kiln" / "lib"
        target.mkdir(parents=True, exist_ok=True)
        found = []
        for name in LIBRARIES:
            if (source / name).is_file():
                shutil.copy2(source / name, target / name)
                found.append(name)
        if "libkiln_runtime.so" not in found:
            raise RuntimeError(f"libkiln_runtime.so not found in {source}")


class BinaryDistribution(Distribution):
    """The wheel carries shared libraries: tag it for this platform, not as pure Python."""

    def has_ext_modules(self):
        return os.environ.get("KILN_SKIP_NATIVE") != "1"


setup(cmdclass={"build_py": BuildWithLibraries}, distclass=BinaryDistribution)
