"""GPU test suite: run by scripts/gpu-check.sh on a machine with an NVIDIA GPU (not by `make test`).
It fails, rather than skips, when there is no GPU: a GPU run that tested nothing must not pass."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "python"))
os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))


def pytest_sessionstart(session):
    import torch

    # Collecting without a GPU runs nothing; CI does it so that an import broken in these modules
    # fails there (tests/python/test_gpu_suite_collects.py).
    if not torch.cuda.is_available() and not session.config.option.collectonly:
        raise pytest.UsageError("tests/gpu needs a CUDA GPU; run it on the GPU machine (scripts/gpu-check.sh)")


def pytest_runtest_logreport(report):
    # A failure's details are printed when it happens, not only in the closing summary: a later
    # test that kills the process (a segfault in the library) would otherwise take them with it.
    if report.failed:
        sys.stderr.write(f"\n---- FAILED {report.nodeid} ({report.when})\n{report.longreprtext}\n----\n")
        sys.stderr.flush()
