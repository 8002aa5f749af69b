"""The GPU suite (tests/gpu) runs only on the GPU machine, so an import broken in one of its modules
(a helper moved out of tests/python, a name tests/gpu's conftest shadows) went unnoticed until a GPU
run: test_cuda_misuse.py imported `python_child_env` from a conftest that tests/gpu's own conftest
shadowed. Collecting the suite runs no test and needs no GPU; every module must import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_gpu_test_module_imports_and_collects():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "gpu")], cwd=REPO, capture_output=True, text=True, timeout=600)
    tail = (done.stdout + done.stderr)[-3000:]
    assert done.returncode == 0, tail
    assert "error" not in done.stdout.lower().splitlines()[-1], tail
    # Modules that skip themselves without a GPU (multi-GPU, torch.compile on CUDA) collect
    # nothing here; the rest must.
    assert sum("::" in line for line in done.stdout.splitlines()) > 1000, tail
