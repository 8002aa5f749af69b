"""The layers of a built engine as `kiln inspect --json` lists them (op, name, attributes, inputs),
for GPU tests that check what the builder's CUDA passes made."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KILN_CLI = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"


def engine_layers(engine_bytes: bytes, tmp_path: Path) -> list[dict]:
    path = tmp_path / "engine.kiln"
    path.write_bytes(engine_bytes)
    assert KILN_CLI.is_file(), f"{KILN_CLI} not built (set KILN_BUILD_DIR)"
    out = subprocess.run([str(KILN_CLI), "inspect", "--json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["layers"]
