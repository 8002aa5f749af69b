"""The layers of a built engine as `kiln inspect --json` lists them (op, name, attributes, inputs),
for GPU tests that check what the builder's CUDA passes made. With members=True a FusedGroup layer
(a generated kernel) is listed as the ops it was formed from, each with its own attributes, so
tests about layouts and op counts need not care which ops share a kernel."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KILN_CLI = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"


def engine_layers(engine_bytes: bytes, tmp_path: Path, members: bool = False) -> list[dict]:
    path = tmp_path / "engine.kiln"
    path.write_bytes(engine_bytes)
    assert KILN_CLI.is_file(), f"{KILN_CLI} not built (set KILN_BUILD_DIR)"
    out = subprocess.run([str(KILN_CLI), "inspect", "--json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    layers = json.loads(out)["layers"]
    return [m for layer in layers for m in _members(layer)] if members else layers


def _members(layer: dict) -> list[dict]:
    if layer["op"] != "FusedGroup":
        return [layer]
    attrs = layer["attributes"]
    out = []
    for j, (op, name) in enumerate(zip(attrs["group_ops"], attrs["group_names"])):
        prefix = f"m{j}."
        member_attrs = {k[len(prefix):]: v for k, v in attrs.items() if k.startswith(prefix)}
        out.append({"op": op, "name": name, "attributes": member_attrs, "group": layer["name"]})
    return out
