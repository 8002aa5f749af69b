"""Helpers for the PyTorch runtime and deployment tests (test_torch_runtime.py, test_deploy_*.py):
small ONNX models with their eager PyTorch twins, hand-written modules that call
torch.ops.kiln.execute_engine, and byte-level crafting of engines and saved programs."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

import engine_bytes as eb

REPO = Path(__file__).resolve().parents[2]


def lib_dir() -> Path:
    """The directory with libkiln_runtime.so and libkiln_torch.so under test."""
    return Path(os.environ["KILN_LIB_DIR"])


def torch_lib() -> Path:
    path = lib_dir() / "libkiln_torch.so"
    assert path.is_file(), (
        f"{path} not built: configure kiln with a Python that has torch (-DPython3_EXECUTABLE=...) "
        "and -DKILN_WITH_TORCH=AUTO or ON")
    return path


# ---- models -----------------------------------------------------------------------------------------

class Mlp(torch.nn.Module):
    """x[N, 8] -> Linear(8, 16) -> ReLU -> Linear(16, 4): the eager twin of mlp_onnx()."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(8, 16, generator=g) * 0.3
        self.b1 = torch.randn(16, generator=g) * 0.1
        self.w2 = torch.randn(16, 4, generator=g) * 0.3

    def forward(self, x):
        return torch.relu(x @ self.w1 + self.b1) @ self.w2


def mlp_onnx(model: Mlp, batch="N") -> onnx.ModelProto:
    inits = [numpy_helper.from_array(t.numpy(), name) for name, t in
             (("w1", model.w1), ("b1", model.b1), ("w2", model.w2))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_io_onnx() -> onnx.ModelProto:
    """a, b: float32[N, 3] -> sum = a + b (float32), count = ReduceSum(a > b) over dim 1 (int64)."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Greater", ["a", "b"], ["gt"]),
        helper.make_node("Cast", ["gt"], ["gt64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["gt64", "axes"], ["count"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "two_io",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("count", TensorProto.INT64, ["N"])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_io_eager(a: torch.Tensor, b: torch.Tensor):
    return a + b, (a > b).to(torch.int64).sum(dim=1)


def seq_onnx() -> onnx.ModelProto:
    """x: float32[2, S] (S dynamic, not a batch) -> y = Neg(x) of shape [2, S]."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "S"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build_mlp_engine(seed: int = 0, max_batch: int = 16) -> tuple[bytes, Mlp]:
    import kiln

    model = Mlp(seed)
    data = kiln.build_onnx(mlp_onnx(model), target="cpu",
                           profiles={"x": ([1, 8], [4, 8], [max_batch, 8])})
    return data, model


def build_two_io_engine() -> bytes:
    import kiln

    return kiln.build_onnx(two_io_onnx(), target="cpu",
                           profiles={"a": ([1, 3], [2, 3], [8, 3]), "b": ([1, 3], [2, 3], [8, 3])})


def build_seq_engine() -> bytes:
    import kiln

    return kiln.build_onnx(seq_onnx(), target="cpu", profiles={"x": ([2, 1], [2, 4], [2, 32])})


# ---- hand-written modules calling the op (what kiln.compile produces, minus the partitioner) -------

class EngineModule(torch.nn.Module):
    """forward(x) -> the engine's first output."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kiln.execute_engine([x], self.engine)[0]


class TwoInputModule(torch.nn.Module):
    """forward(a, b) -> (sum, count), with eager PyTorch around the engine."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        outs = torch.ops.kiln.execute_engine([a * 2.0, b], self.engine)
        return outs[0] - 1.0, outs[1]


def two_input_module_eager(a, b):
    s, c = two_io_eager(a * 2.0, b)
    return s - 1.0, c


def save_programs(module: torch.nn.Module, example_inputs: tuple, directory: Path, name: str,
                  dynamic_batch: bool = True) -> tuple[Path, Path]:
    """torch.jit.save and torch.export.save of `module`; returns (.ts path, .pt2 path)."""
    ts_path = directory / f"{name}.ts"
    pt2_path = directory / f"{name}.pt2"
    torch.jit.save(torch.jit.script(module), str(ts_path))
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=8)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    exported = torch.export.export(module, example_inputs, dynamic_shapes=dynamic_shapes)
    torch.export.save(exported, str(pt2_path))
    return ts_path, pt2_path


# ---- crafting bytes -------------------------------------------------------------------------------

_HEADER_SIZE_OFFSET = 12
_FILE_SIZE_OFFSET = 48
_SECTION_COUNT_OFFSET = 68
_INFO_SECTION = 1
_WEIGHTS_SECTION = 8


def _fields(message: bytes) -> list[tuple[int, int, bytes]]:
    out, i = [], 0
    while i < len(message):
        tag, wire, length = struct.unpack_from("<HHI", message, i)
        out.append((tag, wire, message[i + 8:i + 8 + length]))
        i += 8 + length
    return out


def _message(fields: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(struct.pack("<HHI", tag, wire, len(payload)) + payload for tag, wire, payload in fields)


def with_target(data: bytes, backend: str, sm_arch: int, device_name: str = "") -> bytes:
    """The engine with its info section's target changed (backend, sm_arch, device name), the
    sections laid out again and the checksum recomputed: valid in every respect but its target.
    A cpu engine relabelled 'cuda' is what a CUDA engine looks like to a machine without a GPU."""
    header_size = struct.unpack_from("<I", data, _HEADER_SIZE_OFFSET)[0]
    count = struct.unpack_from("<I", data, _SECTION_COUNT_OFFSET)[0]
    table = [struct.unpack_from("<IIQQ", data, header_size + 24 * k) for k in range(count)]
    sections = []
    for section_id, reserved, offset, size in sorted(table, key=lambda e: e[2]):
        content = data[offset:offset + size]
        if section_id == _INFO_SECTION:
            kept = [f for f in _fields(content) if f[0] not in (2, 3, 4)]
            kept += [(2, 3, backend.encode()), (3, 1, struct.pack("<q", sm_arch)),
                     (4, 3, device_name.encode())]
            content = _message(sorted(kept, key=lambda f: f[0]))
        sections.append((section_id, reserved, content))
    out = bytearray(data[:header_size])
    position = header_size + 24 * count
    entries, blobs = [], []
    for section_id, reserved, content in sections:
        alignment = 64 if section_id == _WEIGHTS_SECTION else 8
        position = (position + alignment - 1) // alignment * alignment
        entries.append(struct.pack("<IIQQ", section_id, reserved, position, len(content)))
        blobs.append((position, content))
        position += len(content)
    out += b"".join(entries)
    for offset, content in blobs:
        out += b"\0" * (offset - len(out)) + content
    struct.pack_into("<Q", out, _FILE_SIZE_OFFSET, len(out))
    struct.pack_into("<Q", out, eb.CHECKSUM_OFFSET, eb.engine_checksum(bytes(out)))
    return bytes(out)


def rewrite_zip(path: Path, transform) -> None:
    """Rewrites every member of the zip archive at `path` through transform(name, bytes)."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info, content in members:
            archive.writestr(info, transform(info.filename, content))
    path.write_bytes(buffer.getvalue())


def replace_engine_in_program(path: Path, old: bytes, new: bytes) -> int:
    """Replaces the engine bytes stored inside a saved program (.ts or .pt2); returns how many
    archive members held them. `new` must have the same length (storages are sized)."""
    assert len(old) == len(new)
    hits = 0

    def transform(name, content):
        nonlocal hits
        if old in content:
            hits += 1
            return content.replace(old, new)
        return content

    rewrite_zip(path, transform)
    return hits


# The pickled engine state starts `GLOBAL '__torch__.torch.classes.kiln Engine'`, then
# EMPTY_TUPLE NEWOBJ, then the version as BININT1.
_STATE_PREFIX = b"kiln\nEngine\n"


def set_state_version_in_program(path: Path, version: int) -> int:
    """Changes the engine state's version number inside a saved program; returns the count."""
    hits = 0

    def transform(name, content):
        nonlocal hits
        at = content.find(_STATE_PREFIX)
        while at >= 0:
            version_at = content.find(b")\x81K\x01", at)
            assert version_at >= 0, f"no version 1 state after the class name in {name}"
            content = content[:version_at] + b")\x81K" + bytes([version]) + content[version_at + 4:]
            hits += 1
            at = content.find(_STATE_PREFIX, version_at)
        return content

    rewrite_zip(path, transform)
    return hits


def reshape_by_value_onnx() -> onnx.ModelProto:
    """x: float32[N], shape: int64[2] -> Reshape(x, shape): output dims come from input values."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape_by_value",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def build_reshape_by_value_engine() -> bytes:
    import kiln

    return kiln.build_onnx(reshape_by_value_onnx(), target="cpu", profiles={"x": ([1], [6], [64])})
