"""kiln.runtime: run kiln engines from PyTorch with the runtime libraries alone.

Needs only ``torch``, ``libkiln_torch.so`` and ``libkiln_runtime.so`` (no builder, ONNX or
protobuf). :func:`load_library` loads ``libkiln_torch.so``, which registers with torch:

* the class ``torch.classes.kiln.Engine(Tensor serialized, int device=-1)``: an engine built
  from its file bytes (a 1-D uint8 CPU tensor), picklable, so it lives inside TorchScript files
  (``torch.jit.save``) and ExportedPrograms (``torch.export.save``);
* the op ``torch.ops.kiln.execute_engine(Tensor[] inputs, Engine engine) -> Tensor[]``;
* ``torch.ops.kiln.set_multi_device_safe_mode / get_multi_device_safe_mode / runtime_version /
  engine_format_version``.

and then registers this module's Python half: the fake class ``kiln::Engine`` that torch.export
traces with, and the fake (meta) kernel of ``execute_engine``.

Fake kernel, dynamic dimensions: an output dimension the engine declares static keeps its size.
A dynamic dimension 0 of an output equals dimension 0 of the first input when the engine has a
dynamic batch (dimension 0 of every input is dynamic); every other dynamic dimension is a new
unbacked size (``torch.library.get_ctx().new_dynamic_size()``), known only when the engine runs.

Libraries are looked up in, in order: ``$KILN_LIB_DIR``, ``kiln/lib/`` next to this file,
``$KILN_BUILD_DIR/lib`` and ``<repo>/build/lib``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import torch

try:
    from ._capi import IncompatibleError, InvalidArgumentError, LibraryNotFoundError
except ImportError:  # kiln/runtime.py deployed alone, without the kiln package around it

    class _KilnError(Exception):
        """An error reported by kiln (the package's KilnError when the package is present)."""

    class InvalidArgumentError(_KilnError, ValueError):  # type: ignore[no-redef]
        """A bad argument (also a ValueError)."""

    class IncompatibleError(_KilnError):  # type: ignore[no-redef]
        """An engine or library from an incompatible kiln."""

    class LibraryNotFoundError(_KilnError, ImportError):  # type: ignore[no-redef]
        """A kiln shared library could not be found or loaded."""

__all__ = [
    "LIBRARY_NAME",
    "RuntimeLibraryNotFoundError",
    "library_dirs",
    "load_library",
    "load_plugin_library",
    "is_loaded",
    "engine_from_bytes",
    "execute",
    "set_multi_device_safe_mode",
    "get_multi_device_safe_mode",
    "runtime_version",
    "engine_format_version",
    "FakeEngine",
]

LIBRARY_NAME = "libkiln_torch.so"
ENGINE_CLASS = "kiln::Engine"
ENGINE_STATE_VERSION = 1  # the newest engine state this module's fake class understands

_lock = threading.RLock()
_python_half_registered = False
_loaded_from: str | None = None


class RuntimeLibraryNotFoundError(LibraryNotFoundError):
    """libkiln_torch.so could not be found or loaded."""


def library_dirs() -> list[Path]:
    """Where :func:`load_library` looks for libkiln_torch.so, in order."""
    dirs: list[Path] = []
    env = os.environ.get("KILN_LIB_DIR")
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parent
    dirs.append(here / "lib")
    build = os.environ.get("KILN_BUILD_DIR")
    if build:
        dirs.append(Path(build) / "lib")
    dirs.append(here.parents[1] / "build" / "lib")
    return dirs


def _ops_registered() -> bool:
    try:
        torch.ops.kiln.execute_engine.default
    except (AttributeError, RuntimeError):
        return False
    return True


def is_loaded() -> bool:
    """True when libkiln_torch.so's ops are registered in this process (however it was loaded)."""
    return _ops_registered()


def load_library(path: str | os.PathLike | None = None) -> str | None:
    """Loads libkiln_torch.so (once) and registers the fake class and fake kernel.

    ``path``: the library file; by default it is searched in :func:`library_dirs`. When the library
    is already loaded (linked in, LD_PRELOAD, an earlier ``torch.ops.load_library``), no second
    copy is loaded: one per process. Returns the path loaded from, or None when it was loaded by
    other means. Raises :class:`RuntimeLibraryNotFoundError` when it cannot be found or loaded.
    """
    global _loaded_from
    with _lock:
        if path is not None and not os.path.isfile(path):
            raise RuntimeLibraryNotFoundError(f"cannot load {os.fspath(path)}: no such file")
        if _ops_registered():
            _register_python_half()
            return _loaded_from
        if path is None:
            searched = library_dirs()
            found = next((d / LIBRARY_NAME for d in searched if (d / LIBRARY_NAME).is_file()), None)
            if found is None:
                raise RuntimeLibraryNotFoundError(
                    f"{LIBRARY_NAME} not found in {', '.join(str(d) for d in searched)}; set "
                    "KILN_LIB_DIR to the directory holding it (and libkiln_runtime.so)")
            path = found
        path = os.fspath(path)
        try:
            torch.ops.load_library(path)
        except OSError as e:
            raise RuntimeLibraryNotFoundError(f"cannot load {path}: {e}") from e
        _loaded_from = path
        _register_python_half()
        return path


def load_plugin_library(path: str | os.PathLike) -> str:
    """Loads a plugin library (docs/plugins.md) into this process, so that engines naming its
    plugins load, here and in ``torch.classes.kiln.Engine``: the plugin registry lives in
    ``libkiln_runtime.so``, which this process shares with ``libkiln_torch.so``. Same as
    :func:`kiln.load_plugin_library`; raises its errors."""
    from . import load_plugin_library as load

    return load(path)


def _ensure_loaded() -> None:
    if not _python_half_registered:
        load_library()


# ---- the fake class and the fake kernel (torch.export / FakeTensor tracing) -----------------------


class FakeEngine:
    """What torch.export traces with in place of a ``torch.classes.kiln.Engine``: the engine's
    bindings, from its ``__obj_flatten__``. It never runs anything."""

    def __init__(self, **fields: Any):
        version = int(fields.get("state_version", ENGINE_STATE_VERSION))
        if version > ENGINE_STATE_VERSION:
            raise IncompatibleError(
                f"kiln.Engine: saved by a newer kiln (engine state version {version}); this "
                f"kiln.runtime understands up to {ENGINE_STATE_VERSION}; upgrade kiln")
        self._fields = fields
        self._input_names = list(fields["input_names"])
        self._output_names = list(fields["output_names"])
        self._input_dtypes = list(fields["input_dtypes"])
        self._output_dtypes = list(fields["output_dtypes"])
        self._input_shapes = [list(s) for s in fields["input_shapes"]]
        self._output_shapes = [list(s) for s in fields["output_shapes"]]
        self._input_min_shapes = [list(s) for s in fields.get("input_min_shapes", self._input_shapes)]
        self._input_max_shapes = [list(s) for s in fields.get("input_max_shapes", self._input_shapes)]
        self._backend = str(fields["backend"])
        self._device_index = int(fields["device_index"])

    @classmethod
    def __obj_unflatten__(cls, flattened):
        return cls(**dict(flattened))

    def input_names(self) -> list[str]:
        return list(self._input_names)

    def output_names(self) -> list[str]:
        return list(self._output_names)

    def input_dtypes(self) -> list[str]:
        return list(self._input_dtypes)

    def output_dtypes(self) -> list[str]:
        return list(self._output_dtypes)

    def input_shapes(self) -> list[list[int]]:
        return [list(s) for s in self._input_shapes]

    def output_shapes(self) -> list[list[int]]:
        return [list(s) for s in self._output_shapes]

    def input_min_shapes(self) -> list[list[int]]:
        return [list(s) for s in self._input_min_shapes]

    def input_max_shapes(self) -> list[list[int]]:
        return [list(s) for s in self._input_max_shapes]

    def backend(self) -> str:
        return self._backend

    def device_index(self) -> int:
        return self._device_index

    def serialized(self) -> torch.Tensor:
        return self._fields["serialized"]

    def idle_contexts(self) -> int:
        return 0

    def has_dynamic_batch(self) -> bool:
        return bool(self._input_shapes) and all(s and s[0] == -1 for s in self._input_shapes)

    def device(self) -> torch.device:
        if self._backend == "cpu":
            return torch.device("cpu")
        return torch.device("cuda", max(self._device_index, 0))


def _fake_engine_of(engine: Any) -> FakeEngine:
    if isinstance(engine, FakeEngine):
        return engine
    wrapped = getattr(engine, "wrapped_obj", None)  # torch._library.fake_class_registry.FakeScriptObject
    if isinstance(wrapped, FakeEngine):
        return wrapped
    if isinstance(engine, torch.ScriptObject):
        return FakeEngine.__obj_unflatten__(engine.__obj_flatten__())
    raise InvalidArgumentError(f"kiln::execute_engine: expected a kiln Engine, got {type(engine).__name__}")


def _fake_execute_engine(inputs: Sequence[torch.Tensor], engine: Any) -> list[torch.Tensor]:
    fake = _fake_engine_of(engine)
    names = fake.input_names()
    if len(inputs) != len(names):
        raise RuntimeError(
            f"kiln::execute_engine: the engine takes {len(names)} input(s) ({', '.join(names)}), "
            f"got {len(inputs)}")
    for i, (x, name, dtype) in enumerate(zip(inputs, names, fake.input_dtypes())):
        if x.dtype != getattr(torch, dtype):
            raise RuntimeError(
                f"kiln::execute_engine: input {i} ('{name}'): expected dtype {dtype}, got {x.dtype}")
        if x.dim() != len(fake.input_shapes()[i]):
            raise RuntimeError(
                f"kiln::execute_engine: input {i} ('{name}'): expected shape {fake.input_shapes()[i]}, "
                f"got {list(x.shape)}")
    device = inputs[0].device if inputs and inputs[0].device.type == "meta" else fake.device()
    batch = inputs[0].shape[0] if inputs and fake.has_dynamic_batch() else None
    ctx = None
    outputs = []
    for shape, dtype in zip(fake.output_shapes(), fake.output_dtypes()):
        sizes = []
        for d, size in enumerate(shape):
            if size != -1:
                sizes.append(size)
            elif d == 0 and batch is not None:
                sizes.append(batch)
            else:
                if ctx is None:
                    ctx = torch.library.get_ctx()
                sizes.append(ctx.new_dynamic_size())
        outputs.append(torch.empty(sizes, dtype=getattr(torch, dtype), device=device))
    return outputs


def _register_python_half() -> None:
    global _python_half_registered
    if _python_half_registered:
        return
    torch._library.register_fake_class(ENGINE_CLASS)(FakeEngine)
    torch.library.register_fake("kiln::execute_engine")(_fake_execute_engine)
    _python_half_registered = True


# ---- engines and calls ------------------------------------------------------------------------------


def _device_index(device: Any) -> tuple[int, bool]:
    """(the GPU index for torch.classes.kiln.Engine, whether the caller asked for the cpu)."""
    if device is None:
        return -1, False
    if isinstance(device, int):
        return device, False
    device = torch.device(device)
    if device.type == "cpu":
        return -1, True
    if device.type != "cuda":
        raise InvalidArgumentError(f"kiln engines run on cpu or cuda, not {device}")
    return (-1 if device.index is None else device.index), False


def engine_from_bytes(data: bytes | bytearray | memoryview | torch.Tensor, device: Any = None) -> torch.ScriptObject:
    """A ``torch.classes.kiln.Engine`` from an engine file's bytes.

    ``device``: None (the engine's backend; CUDA engines go to the current GPU when compatible),
    a GPU index, ``"cuda:N"``, ``"cpu"`` or a ``torch.device``. Raises RuntimeError naming the
    problem when the runtime rejects the bytes (corrupt, newer format, CUDA engine without a GPU).
    """
    _ensure_loaded()
    if isinstance(data, torch.Tensor):
        tensor = data.detach().to("cpu").reshape(-1)
        if tensor.dtype != torch.uint8:
            raise InvalidArgumentError(f"engine bytes must be a uint8 tensor, got {tensor.dtype}")
    else:
        raw = bytes(data)
        tensor = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    index, wants_cpu = _device_index(device)
    engine = torch.classes.kiln.Engine(tensor, index)
    if wants_cpu and engine.backend() != "cpu":
        raise IncompatibleError(f"kiln.Engine: the engine was built for {engine.backend()} and cannot run on the cpu")
    return engine


def execute(engine: torch.ScriptObject, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Runs ``engine`` on ``inputs`` (in its input order); returns its outputs in order."""
    _ensure_loaded()
    return torch.ops.kiln.execute_engine(list(inputs), engine)


class _SafeModeSetting:
    """Returned by :func:`set_multi_device_safe_mode`: the mode is already set; used as a context
    manager it restores the prior mode on exit."""

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self.previous = bool(torch.ops.kiln.set_multi_device_safe_mode(self.enabled))

    def __enter__(self) -> "_SafeModeSetting":
        return self

    def __exit__(self, *exc_info) -> bool:
        torch.ops.kiln.set_multi_device_safe_mode(self.previous)
        return False

    def __repr__(self) -> str:
        return f"<kiln multi-device safe mode {'on' if self.enabled else 'off'} (was {'on' if self.previous else 'off'})>"


def set_multi_device_safe_mode(enabled: bool) -> _SafeModeSetting:
    """Turns multi-device safe mode on or off, process-wide (off by default).

    Off: each call checks that inputs are on the engine's device and that the current CUDA device
    is the engine's, and fails clearly otherwise. On: inputs are moved to the engine's device and
    the engine runs there, restoring the caller's current device afterwards.

    Also a context manager: ``with kiln.runtime.set_multi_device_safe_mode(True): ...`` restores
    the prior mode on exit. ``.previous`` holds the prior mode.
    """
    _ensure_loaded()
    return _SafeModeSetting(enabled)


def get_multi_device_safe_mode() -> bool:
    _ensure_loaded()
    return bool(torch.ops.kiln.get_multi_device_safe_mode())


def runtime_version() -> str:
    """The kiln runtime's version, e.g. "0.1.0"."""
    _ensure_loaded()
    return torch.ops.kiln.runtime_version()


def engine_format_version() -> str:
    """The newest engine file format the runtime reads, e.g. "1.1"."""
    _ensure_loaded()
    return torch.ops.kiln.engine_format_version()
