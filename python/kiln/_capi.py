"""ctypes bindings to kiln's C APIs.

Two libraries, loaded separately:

* ``libkiln_runtime.so`` (include/kiln/kiln.h): load engines and run them. Loaded on first use by
  :func:`runtime`.
* ``libkiln.so`` (include/kiln/kiln_builder.h): build engines from ONNX. Loaded only when
  :func:`builder` is first called, so that programs which only run engines need nothing but the
  runtime library.

Libraries are looked up in, in order: the directory in the environment variable ``KILN_LIB_DIR``,
``python/kiln/lib/`` next to this file, and ``<repo>/build/lib``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

__all__ = [
    "KilnError",
    "InvalidArgumentError",
    "NotFoundError",
    "UnsupportedError",
    "CorruptFileError",
    "IncompatibleError",
    "DeviceError",
    "OutOfMemoryError",
    "IoError",
    "InternalError",
    "LibraryNotFoundError",
    "library_dirs",
    "runtime",
    "builder",
    "check",
    "KilnTensor",
]


class KilnError(Exception):
    """An error reported by a kiln library. ``status`` is the kiln_status code."""

    status = -1

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgumentError(KilnError, ValueError):
    """A bad argument (also a ValueError, as Python's own argument checks raise)."""

    status = 1


class NotFoundError(KilnError):
    status = 2


class UnsupportedError(KilnError, NotImplementedError):
    """Something kiln does not do (yet) (also a NotImplementedError)."""

    status = 3


class CorruptFileError(KilnError):
    status = 4


class IncompatibleError(KilnError):
    status = 5


class DeviceError(KilnError):
    status = 6


class OutOfMemoryError(KilnError):
    status = 7


class IoError(KilnError):
    status = 8


class InternalError(KilnError):
    status = 9


class LibraryNotFoundError(KilnError, ImportError):
    """A kiln shared library could not be found or loaded."""


_ERRORS_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        UnsupportedError,
        CorruptFileError,
        IncompatibleError,
        DeviceError,
        OutOfMemoryError,
        IoError,
        InternalError,
    )
}


class KilnTensor(ctypes.Structure):
    """struct kiln_tensor."""

    _fields_ = [
        ("dtype", ctypes.c_int),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("data", ctypes.c_void_p),
    ]


def library_dirs() -> list[Path]:
    """The directories searched for the kiln libraries, in order."""
    dirs = []
    env = os.environ.get("KILN_LIB_DIR")
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parent
    dirs.append(here / "lib")
    dirs.append(here.parent.parent / "build" / "lib")
    return dirs


def _load(name: str) -> ctypes.CDLL:
    tried = []
    for directory in library_dirs():
        candidate = directory / name
        tried.append(str(candidate))
        if candidate.is_file():
            try:
                # RTLD_GLOBAL lets libkiln.so, loaded later, resolve against this very runtime.
                return ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise LibraryNotFoundError(f"cannot load {candidate}: {e}") from e
    raise LibraryNotFoundError(
        f"{name} not found; build kiln or set KILN_LIB_DIR (tried: {', '.join(tried)})"
    )


_lock = threading.Lock()
_runtime: ctypes.CDLL | None = None
_builder: ctypes.CDLL | None = None

_c_status = ctypes.c_int
_p = ctypes.c_void_p


def _declare(lib: ctypes.CDLL, name: str, restype, argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes


def runtime() -> ctypes.CDLL:
    """libkiln_runtime.so with its functions' signatures declared."""
    global _runtime
    with _lock:
        if _runtime is None:
            lib = _load("libkiln_runtime.so")
            cp = ctypes.c_char_p
            _declare(lib, "kiln_last_error", cp, [])
            _declare(lib, "kiln_runtime_version", cp, [])
            _declare(lib, "kiln_engine_format_version", cp, [])
            _declare(lib, "kiln_engine_load_file", _c_status, [cp, ctypes.POINTER(_p)])
            _declare(lib, "kiln_engine_load_bytes", _c_status,
                     [_p, ctypes.c_size_t, ctypes.POINTER(_p)])
            _declare(lib, "kiln_engine_load_file_on_device", _c_status,
                     [cp, ctypes.c_int, ctypes.POINTER(_p)])
            _declare(lib, "kiln_engine_load_bytes_on_device", _c_status,
                     [_p, ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(_p)])
            _declare(lib, "kiln_engine_release", None, [_p])
            _declare(lib, "kiln_engine_num_bindings", _c_status,
                     [_p, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)])
            _declare(lib, "kiln_engine_binding", _c_status,
                     [_p, ctypes.c_int, ctypes.c_size_t, ctypes.POINTER(cp),
                      ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int32),
                      ctypes.POINTER(ctypes.POINTER(ctypes.c_int64))])
            _declare(lib, "kiln_engine_backend", _c_status, [_p, ctypes.POINTER(cp)])
            _declare(lib, "kiln_engine_metadata", _c_status, [_p, ctypes.POINTER(cp)])
            _declare(lib, "kiln_context_create", _c_status, [_p, ctypes.POINTER(_p)])
            _declare(lib, "kiln_context_release", None, [_p])
            _declare(lib, "kiln_context_execute", _c_status,
                     [_p, ctypes.c_size_t, ctypes.POINTER(cp), ctypes.POINTER(KilnTensor), _p])
            _declare(lib, "kiln_context_execute_bound", _c_status,
                     [_p, ctypes.c_size_t, ctypes.POINTER(cp), ctypes.POINTER(KilnTensor),
                      ctypes.c_size_t, ctypes.POINTER(cp), ctypes.POINTER(KilnTensor), _p])
            _declare(lib, "kiln_context_set_cuda_graphs", _c_status, [_p, ctypes.c_int])
            _declare(lib, "kiln_context_set_threads", _c_status, [_p, ctypes.c_int])
            _declare(lib, "kiln_context_threads", _c_status, [_p, ctypes.POINTER(ctypes.c_int)])
            _declare(lib, "kiln_set_multi_device_safe_mode", ctypes.c_int, [ctypes.c_int])
            _declare(lib, "kiln_get_multi_device_safe_mode", ctypes.c_int, [])
            _declare(lib, "kiln_context_output", _c_status,
                     [_p, cp, ctypes.POINTER(KilnTensor)])
            _declare(lib, "kiln_load_plugin_library", _c_status, [cp])
            _declare(lib, "kiln_describe_plugin", _c_status,
                     [cp, cp, ctypes.c_int32, ctypes.POINTER(cp)])
            _declare(lib, "kiln_backend_supports", _c_status,
                     [cp, cp, ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t,
                      ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, ctypes.POINTER(cp)])
            _declare(lib, "kiln_context_output_shape", _c_status,
                     [_p, cp, ctypes.POINTER(ctypes.c_int32),
                      ctypes.POINTER(ctypes.POINTER(ctypes.c_int64))])
            _runtime = lib
        return _runtime


def builder() -> ctypes.CDLL:
    """libkiln.so (the builder) with its functions' signatures declared. Loads the runtime first."""
    global _builder
    runtime()
    with _lock:
        if _builder is None:
            lib = _load("libkiln.so")
            cp = ctypes.c_char_p
            _declare(lib, "kiln_build_onnx_file", _c_status,
                     [cp, cp, ctypes.POINTER(_p), ctypes.POINTER(ctypes.c_size_t)])
            _declare(lib, "kiln_build_onnx_bytes", _c_status,
                     [_p, ctypes.c_size_t, cp, cp, ctypes.POINTER(_p),
                      ctypes.POINTER(ctypes.c_size_t)])
            _declare(lib, "kiln_free", None, [_p])
            _builder = lib
        return _builder


def last_error() -> str:
    message = runtime().kiln_last_error()
    return message.decode("utf-8", "replace") if message else ""


def check(status: int) -> None:
    """Raises the KilnError subclass for a failed kiln_status, with kiln_last_error's message."""
    if status == 0:
        return
    message = last_error() or f"kiln call failed with status {status}"
    cls = _ERRORS_BY_STATUS.get(status, KilnError)
    raise cls(message, status)
