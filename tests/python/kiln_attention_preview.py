"""The builder's test hook `kiln_testing_build_with_cuda_attention_passes` (src/builder/
cuda_attention_preview.hpp): a CPU engine built after the cuda target's attention passes, so tests
without a GPU can see which attention forms fuse and run the fused graph on the CPU reference."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import tempfile
from pathlib import Path

import onnx

import kiln
from kiln import _capi

REPO = Path(__file__).resolve().parents[2]
KILN_CLI = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"


def build(model: "onnx.ModelProto | bytes", precision: str = "fp16",
          attention: str = "tensor_cores") -> bytes:
    """Engine bytes for the CPU backend after lowering to `precision` (fp32/fp16/bf16) and, per
    `attention` (none/tensor_cores/any), fusing attention as `--target cuda` does."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    lib = _capi.builder()
    fn = lib.kiln_testing_build_with_cuda_attention_passes
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                   ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    out, size = ctypes.c_void_p(), ctypes.c_size_t()
    config = json.dumps({"precision": precision, "attention": attention}).encode()
    _capi.check(fn(data, len(data), config, ctypes.byref(out), ctypes.byref(size)))
    try:
        return ctypes.string_at(out, size.value)
    finally:
        lib.kiln_free(out)


def layers(engine_bytes: bytes) -> list[dict]:
    """The engine's layers as `kiln inspect --json` lists them (op, name, attributes, ...)."""
    assert KILN_CLI.is_file(), f"{KILN_CLI} not built (set KILN_BUILD_DIR)"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine.kiln"
        path.write_bytes(engine_bytes)
        out = subprocess.run([str(KILN_CLI), "inspect", "--json", str(path)], check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out)["layers"]


def fused_attention_layers(engine_bytes: bytes) -> list[dict]:
    return [layer for layer in layers(engine_bytes) if layer["op"] == "FusedAttention"]


def run(engine_bytes: bytes, feeds: dict) -> dict:
    return kiln.Engine(engine_bytes).run(feeds)
