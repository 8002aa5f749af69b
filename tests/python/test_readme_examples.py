"""The README's Python examples run as written (issue 14, point 7): each ```python block of the
"Python" and "PyTorch" sections in a fresh process, in a directory holding tiny.onnx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln_testing import python_child_env

REPO = Path(__file__).resolve().parents[2]


def readme_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n{section}\n")
    end = text.find("\n## ", start + len(section) + 2)
    body = text[start:end if end >= 0 else len(text)]
    if section.startswith("## "):  # the section's own blocks, not its subsections'
        sub = body.find("\n### ")
        body = body if sub < 0 else body[:sub]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.parametrize("section", ["## Python", "### PyTorch"])
def test_readme_python_blocks_run(section, tmp_path):
    blocks = readme_blocks(section)
    assert blocks, f"no python block in {section}"
    subprocess.run([sys.executable, str(REPO / "examples" / "tiny_model.py"), str(tmp_path / "tiny.onnx")],
                   check=True, capture_output=True, timeout=120)
    for i, block in enumerate(blocks):
        script = tmp_path / f"block{i}.py"
        script.write_text(block)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600, env=python_child_env(dict(os.environ)))
        assert result.returncode == 0, f"{section} block {i} failed:\n{result.stdout}\n{result.stderr}"
