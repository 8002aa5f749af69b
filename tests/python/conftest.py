"""pytest setup for kiln's Python tests.

Puts <repo>/python on sys.path and points the kiln package at the build under test:
KILN_BUILD_DIR (default <repo>/build) provides lib/ (libkiln_runtime.so, libkiln.so) and
bin/kiln. KILN_LIB_DIR, when set, wins for the libraries.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")).resolve()

sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("KILN_LIB_DIR", str(BUILD_DIR / "lib"))

# Under CI's ASan stage (scripts/ci-sanitizers.sh python) pytest runs with the sanitizer runtime
# preloaded for the instrumented libraries. The kiln CLI carries its own (static) copy and refuses
# a second one, so children do not inherit the preload; a child Python that loads the libraries
# gets it back from kiln_testing.python_child_env().
SANITIZER_PRELOAD = os.environ.get("KILN_SANITIZER_PRELOAD", "")
if SANITIZER_PRELOAD:
    os.environ.pop("LD_PRELOAD", None)


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return BUILD_DIR


@pytest.fixture(scope="session")
def kiln_cli(build_dir: Path) -> Path:
    path = build_dir / "bin" / "kiln"
    assert path.is_file(), f"{path} not built (set KILN_BUILD_DIR to the build directory)"
    return path
