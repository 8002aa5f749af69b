"""kiln: compile neural networks into engines and run them.

This module needs only numpy and ``libkiln_runtime.so`` to run engines; building an engine
(:func:`build_onnx`) loads ``libkiln.so`` on first use.

bfloat16 has no numpy dtype: bfloat16 bindings take and return ``uint16`` arrays holding the raw
bits (the same convention as the ``kiln`` CLI's .npy files). float8 bindings (float8e4m3fn,
float8e4m3fnuz, float8e5m2, float8e5m2fnuz) take and return ml_dtypes' float8 arrays when the
``ml_dtypes`` package is installed, else ``uint8`` arrays of their codes; ``uint8`` code arrays are
taken as inputs either way. Likewise float8e8m0, float4e2m1, uint4 and uint2 bindings (ml_dtypes'
float8_e8m0fnu, float4_e2m1fn, uint4 and uint2, or ``uint8``) and int4 and int2 bindings (ml_dtypes'
int4 and int2, or ``int8`` values), one element per byte, never packed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from . import _capi
from ._capi import (
    CorruptFileError,
    DeviceError,
    IncompatibleError,
    InternalError,
    InvalidArgumentError,
    IoError,
    KilnError,
    LibraryNotFoundError,
    NotFoundError,
    OutOfMemoryError,
    UnsupportedError,
)

__all__ = [
    "Binding",
    "Engine",
    "build_onnx",
    "load_plugin_library",
    "describe_plugin",
    "supports",
    "runtime_version",
    "engine_format_version",
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
]  # plus the lazy PyTorch attributes in _LAZY (left out so `import *` stays torch-free)

# kiln_dtype <-> numpy. bfloat16 travels as its raw uint16 bits.
_UINT8, _UINT16, _BFLOAT16 = 2, 4, 16
_KILN_TO_NUMPY = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    _UINT16: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
    _BFLOAT16: np.dtype(np.uint16),
}
# uint16 arrays are uint16 tensors, except for a bfloat16 binding (_binding_code).
_NUMPY_TO_KILN = {dt: code for code, dt in _KILN_TO_NUMPY.items() if code != _BFLOAT16}
# bfloat16 tensors are handed out as their uint16 bit patterns (above); arrays of ml_dtypes'
# bfloat16 (what onnx and jax use) are taken as inputs too when that package is installed.
try:
    import ml_dtypes as _ml_dtypes

    _NUMPY_TO_KILN[np.dtype(_ml_dtypes.bfloat16)] = _BFLOAT16
except ImportError:  # optional: without it, bfloat16 inputs are given as uint16 bit patterns
    _ml_dtypes = None
# float8 (ONNX FLOAT8E4M3FN=17 ... FLOAT8E5M2FNUZ=20): ml_dtypes' types when installed, else the
# uint8 codes (_binding_code takes uint8 arrays for float8 bindings).
_FLOAT8_NAMES = {17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz"}
for _code, _name in _FLOAT8_NAMES.items():
    if _ml_dtypes is not None:
        _dtype = np.dtype(getattr(_ml_dtypes, _name.replace("float8", "float8_")))
        _KILN_TO_NUMPY[_code] = _dtype
        _NUMPY_TO_KILN[_dtype] = _code
    else:
        _KILN_TO_NUMPY[_code] = np.dtype(np.uint8)
# The sub-byte types and float8e8m0 (ONNX UINT4=21 ... INT2=26), one element per byte as in
# ml_dtypes: its arrays when installed, else int8 values (int4, int2) or uint8 values and codes.
# kiln writes int4/int2 sign-extended and reads only the low bits; outputs are masked to ml_dtypes'
# form (the low bits alone) and int4/int2 inputs are widened to int8 values first.
_SUB_BYTE_NAMES = {21: "uint4", 22: "int4", 23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2"}
_ML_DTYPES_NAMES = {21: "uint4", 22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2",
                    26: "int2"}
_SIGNED_SUB_BYTE = {22: 0x0F, 26: 0x03}  # code -> mask of its value bits
for _code, _name in _ML_DTYPES_NAMES.items():
    if _ml_dtypes is not None and hasattr(_ml_dtypes, _name):
        _dtype = np.dtype(getattr(_ml_dtypes, _name))
        _KILN_TO_NUMPY[_code] = _dtype
        _NUMPY_TO_KILN[_dtype] = _code
    else:
        _KILN_TO_NUMPY[_code] = np.dtype(np.int8 if _code in _SIGNED_SUB_BYTE else np.uint8)
_KILN_DTYPE_NAMES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16", **_FLOAT8_NAMES,
    **_SUB_BYTE_NAMES,
}
# Bindings that take uint8 arrays as their codes or values, and those that take int8 values.
_UINT8_CODED = {name for code, name in {**_FLOAT8_NAMES, **_SUB_BYTE_NAMES}.items()
                if code not in _SIGNED_SUB_BYTE}
_INT8, _INT8_CODED = 3, {"int4": 22, "int2": 26}


def _binding_code(dtype: np.dtype, binding: "Binding | None") -> "int | None":
    """The kiln dtype code of an array of numpy ``dtype`` given for ``binding``: uint16 arrays are
    uint16 tensors, or the raw bits of a bfloat16 binding; uint8 arrays are uint8 tensors, or the
    codes of a float8/float8e8m0/float4e2m1 binding or the values of a uint4/uint2 binding; int8
    arrays are int8 tensors or the values of an int4/int2 binding."""
    code = _NUMPY_TO_KILN.get(dtype)
    if code == _UINT16 and binding is not None and binding.dtype_name == "bfloat16":
        return _BFLOAT16
    if code == _UINT8 and binding is not None and binding.dtype_name in _UINT8_CODED:
        return next(c for c, n in {**_FLOAT8_NAMES, **_SUB_BYTE_NAMES}.items() if n == binding.dtype_name)
    if code == _INT8 and binding is not None and binding.dtype_name in _INT8_CODED:
        return _INT8_CODED[binding.dtype_name]
    return code
_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def _c_string(text: "str | bytes", what: str) -> bytes:
    """``text`` as the bytes of a C string; a NUL inside it would cut the string short there, so
    it is refused rather than silently truncated."""
    data = text if isinstance(text, bytes) else str(text).encode()
    if b"\0" in data:
        raise InvalidArgumentError(f"{what} {text!r} contains a NUL character")
    return data


def _c_path(path: "str | os.PathLike", what: str) -> bytes:
    return _c_string(os.fsencode(os.fspath(path)), what)

# PyTorch integration, imported on first use so that `import kiln` needs neither torch nor onnx.
_LAZY = {
    "compile": ("_compile", "compile"),
    "CompileReport": ("_compile", "CompileReport"),
    "FullCompilationError": ("_compile", "FullCompilationError"),
    "PluginFieldError": ("_plugin_ops", "PluginFieldError"),
    "DynamicDim": ("_dynamic_shapes", "DynamicDim"),
    "DynamicShapeError": ("_dynamic_shapes", "DynamicShapeError"),
    "save": ("save_load", "save"),
    "load": ("save_load", "load"),
    "compare": ("compare", "compare"),  # engine vs ONNX Runtime (needs onnxruntime)
    "compare_engines": ("compare", "compare_engines"),  # engine vs engine
    "quantize": ("_quantize", "quantize"),  # Q/DQ from calibration (needs onnx)
    "QuantizationReport": ("_quantize", "QuantizationReport"),
    "quantization_sensitivity": ("_quantization_sensitivity", "quantization_sensitivity"),
    "LayerSensitivity": ("_quantization_sensitivity", "LayerSensitivity"),
}


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'kiln' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{target[0]}", __name__), target[1])
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def _register_dynamo_backend_if_loaded() -> None:
    """torch.compile(backend="kiln") without the package's entry point: register now if Dynamo
    is already imported (cheap then); otherwise importing kiln.torch_backend registers it."""
    import sys

    if "torch._dynamo" in sys.modules:
        try:
            from . import torch_backend  # noqa: F401  (registers on import)
        except Exception:  # a broken torch install must not break `import kiln`
            pass


def load_plugin_library(path: "str | os.PathLike") -> str:
    """Loads a plugin library (include/kiln/plugin.h, docs/plugins.md) into this process and
    registers its plugins, for building engines whose ONNX nodes map to them and for loading
    engines that name them. Loading one twice is harmless. Returns the path as given. Raises
    NotFoundError when the file cannot be loaded, IncompatibleError for a plugin built against
    another plugin ABI version, InvalidArgumentError for a file that is no kiln plugin or a plugin
    that conflicts with one already registered (the message names both libraries)."""
    path = os.fspath(path)
    _capi.check(_capi.runtime().kiln_load_plugin_library(path.encode()))
    return path


def describe_plugin(plugin_namespace: str, name: str, version: int = 0) -> "dict | None":
    """The plugin creator registered under (``plugin_namespace``, ``name``) at ``version`` (0: its
    highest registered version) as a dict: ``namespace``, ``name``, ``version``, ``library``,
    ``data_dependent_shapes`` and ``fields`` (each ``{"name", "kind", "required"}``, kind one of
    int, float, string, ints, floats, strings). None when no such plugin is registered."""
    import ctypes
    import json

    text = ctypes.c_char_p()
    status = _capi.runtime().kiln_describe_plugin(plugin_namespace.encode(), name.encode(),
                                                  int(version), ctypes.byref(text))
    if status == NotFoundError.status:
        return None
    _capi.check(status)
    return json.loads(text.value.decode())


def supports(op: str, input_dtypes, backend: str = "cpu", output_dtypes=()) -> "str | None":
    """Whether ``backend`` has a kernel for ``op`` (an ONNX op type, docs/ops.md) with inputs of
    ``input_dtypes`` and outputs of ``output_dtypes`` (each a kiln dtype name such as
    ``"float16"``, a numpy dtype, or a kiln/ONNX TensorProto code; None for an absent optional
    input). Answered from the kernels' registrations without building anything; attributes and
    shapes are not considered. Returns None when it has, else the reason. Raises NotFoundError for
    a backend this runtime lacks."""
    import ctypes

    def code(dtype) -> int:
        if dtype is None:
            return -1
        if isinstance(dtype, int):
            return dtype
        if isinstance(dtype, str):
            for c, name in _KILN_DTYPE_NAMES.items():
                if name == dtype:
                    return c
        found = _NUMPY_TO_KILN.get(np.dtype(dtype))
        if found is None:
            raise InvalidArgumentError(f"kiln.supports: {dtype!r} is no kiln dtype")
        return found

    ins = [code(d) for d in input_dtypes]
    outs = [code(d) for d in output_dtypes]
    in_array = (ctypes.c_int32 * max(len(ins), 1))(*ins)
    out_array = (ctypes.c_int32 * max(len(outs), 1))(*outs)
    reason = ctypes.c_char_p()
    _capi.check(_capi.runtime().kiln_backend_supports(
        _c_string(backend, "backend"), _c_string(op, "op"), in_array, len(ins), out_array, len(outs),
        ctypes.byref(reason)))
    text = reason.value.decode() if reason.value else ""
    return text or None


def runtime_version() -> str:
    """The runtime library's version, e.g. "0.1.0"."""
    return _capi.runtime().kiln_runtime_version().decode()


def engine_format_version() -> str:
    """The newest engine file format the runtime reads, e.g. "1.1"."""
    return _capi.runtime().kiln_engine_format_version().decode()


def _profiles_json(profiles: Mapping[str, Any]) -> dict:
    """{name: {"min", "opt", "max"}} from (min, max), (min, opt, max) or {"min", "opt", "max"}
    specs (opt defaults to min, as for the CLI's --profile); InvalidArgumentError otherwise."""
    out = {}
    for name, spec in profiles.items():
        if isinstance(spec, Mapping):
            missing = {"min", "max"} - set(spec)
            if missing:
                raise InvalidArgumentError(f"profile for {name!r} lacks {sorted(missing)}")
            lo, hi = spec["min"], spec["max"]
            opt = spec.get("opt", lo)
        elif isinstance(spec, (list, tuple)) and len(spec) == 2:
            lo, hi = spec
            opt = lo
        elif isinstance(spec, (list, tuple)) and len(spec) == 3:
            lo, opt, hi = spec
        else:
            raise InvalidArgumentError(
                f"profile for {name!r}: expected (min, max), (min, opt, max) or a dict with min, "
                f"max and optionally opt, got {spec!r}")
        try:
            out[name] = {"min": [int(d) for d in lo], "opt": [int(d) for d in opt],
                         "max": [int(d) for d in hi]}
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"profile for {name!r}: shapes must be sequences of ints, "
                                       f"got {spec!r}") from e
    return out


def build_onnx(
    model: "str | os.PathLike | bytes",
    *,
    precision: str = "fp32",
    target: str = "cpu",
    profiles: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    device: int | None = None,
    workspace_limit: int | None = None,
    timing_cache: "str | os.PathLike | None" = None,
    kernel_cache: "str | os.PathLike | None" = None,
    cuda_arch: int | None = None,
    explain: bool = False,
    allow_host_layers: bool = True,
    base_dir: "str | os.PathLike | None" = None,
) -> bytes:
    """Compiles an ONNX model into engine bytes.

    ``model`` is a path, the serialized model bytes, or an object with ``SerializeToString``
    (an ``onnx.ModelProto``). ``base_dir`` is where the external data files of a model given as
    bytes or a ModelProto are (e.g. one loaded with ``onnx.load(path, load_external_data=False)``:
    pass the directory of ``path``); a model given as a path finds them next to itself, and
    base_dir then overrides that directory. ``profiles`` maps a dynamic input's name to
    ``(min, max)``, ``(min, opt, max)`` shapes or ``{"min": .., "opt": .., "max": ..}`` (opt
    defaults to min, as for ``kiln build --profile``). ``timing_cache`` (cuda)
    is a file of GEMM/convolution tactics reused by later builds and extended by this one.
    ``kernel_cache`` (cuda) is the directory of compiled generated kernels reused across builds
    (None: ``$KILN_KERNEL_CACHE``, else ``~/.cache/kiln/kernels``; ``"off"``: no cache).
    ``cuda_arch`` (cuda) builds for compute capability ``sm_<cuda_arch>`` (90: H100/H200) without
    that GPU: nothing is timed, tactics are chosen when the engine first runs. ``explain`` records
    in the engine's metadata what each pass changed, which fusion group each node joined and, under
    ``kiln_build.explain.epilogues``, each Add or Relu a Conv, MatMul or Gemm did not take into its
    epilogue and why (such as dynamic dims not provably equal). A cuda engine runs a layer that no
    cuda kernel takes (an op, a dtype such as uint32 or float8, an attribute choice) on the host
    with the CPU kernel, synchronising there and without CUDA graphs; such layers are listed in
    the metadata under ``kiln_build.host_layers``, and ``allow_host_layers=False`` refuses them
    (``UnsupportedError`` listing each).
    ``workspace_limit`` takes only its default, 1 GiB (``UnsupportedError`` otherwise): kernels get
    a fixed 1 GiB of scratch memory that an engine cannot change yet.
    """
    if precision not in _PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    config: dict[str, Any] = {"precision": precision, "target": target}
    if profiles:
        config["profiles"] = _profiles_json(profiles)
    if metadata is not None:
        config["metadata"] = dict(metadata)
    if device is not None:
        config["device"] = int(device)
    if workspace_limit is not None:
        config["workspace_limit"] = int(workspace_limit)
    if timing_cache is not None:
        config["timing_cache"] = os.fspath(timing_cache)
    if kernel_cache is not None:
        config["kernel_cache"] = os.fspath(kernel_cache)
    if cuda_arch is not None:
        config["cuda_arch"] = int(cuda_arch)
    if explain:
        config["explain"] = True
    if not allow_host_layers:
        config["allow_host_layers"] = False
    config_json = json.dumps(config).encode()

    lib = _capi.builder()
    out_ptr = ctypes.c_void_p()
    out_size = ctypes.c_size_t()
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    if base_dir is not None and not isinstance(model, (bytes, bytearray, memoryview)):
        # A path with another data directory: read it here and build from bytes.
        try:
            with open(os.fspath(model), "rb") as f:
                model = f.read()
        except FileNotFoundError as e:
            raise NotFoundError(f"{os.fspath(model)}: no such file") from e
        except OSError as e:
            raise IoError(f"{os.fspath(model)}: {e.strerror or e}") from e
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        directory = b"" if base_dir is None else _c_path(base_dir, "base_dir")
        _capi.check(lib.kiln_build_onnx_bytes(data, len(data), directory, config_json,
                                              ctypes.byref(out_ptr), ctypes.byref(out_size)))
    else:
        path = _c_path(model, "model path")
        _capi.check(lib.kiln_build_onnx_file(path, config_json,
                                             ctypes.byref(out_ptr), ctypes.byref(out_size)))
    try:
        return ctypes.string_at(out_ptr, out_size.value)
    finally:
        lib.kiln_free(out_ptr)


def _check_threads(threads: "int | None") -> int:
    """0 for None; InvalidArgumentError for anything but an int in [0, 1024]."""
    if threads is None:
        return 0
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= 1024:
        raise InvalidArgumentError(f"threads must be None or an int in [0, 1024], got {threads!r}")
    return threads


@dataclass(frozen=True)
class Binding:
    """An engine input or output. Dynamic dimensions are -1 in ``shape``."""

    name: str
    dtype: np.dtype
    dtype_name: str
    shape: tuple[int, ...]

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape)


class Engine:
    """A loaded engine: from engine bytes, or from a path to an engine file.

    ``device``: for CUDA engines the GPU's CUDA ordinal to bind to; None (default) picks the
    most compatible GPU, the current device when it fits. CPU engines take only None.

    ``threads`` (CPU engines): the threads each call's kernels split their work over; None or 0
    (default): the CPUs this process may use divided by the number of live CPU contexts, so
    calls running at once share the cores (a default of several threads runs each call on them
    or on the calling thread alone, whichever its timings say is faster); a number given here is
    used on every call. See ``set_threads``.

    ``run`` executes it on an execution context leased from the Engine's pool: a call takes an
    idle context, or creates one, and gives it back when its outputs are copied out. So one Engine
    may be used from any number of threads at once (each running call has its own context; the
    pool grows to the largest number of concurrent calls). ``close`` while calls are running
    refuses new calls; running ones finish and release their contexts.
    """

    def __init__(self, source: "bytes | bytearray | memoryview | str | os.PathLike",
                 device: int | None = None, threads: int | None = None):
        self._lib = _capi.runtime()
        self._handle = ctypes.c_void_p()
        self._lock = threading.Lock()  # guards _handle's lifetime, _idle, _cuda_graphs, _threads
        self._idle: list[ctypes.c_void_p] = []  # contexts no call is using
        self._cuda_graphs: bool | None = None  # set_cuda_graphs' choice, applied to every context
        self._threads: int = _check_threads(threads)  # set_threads' choice, for every context
        if device is not None and (isinstance(device, bool) or not isinstance(device, int)
                                   or device < 0):
            raise InvalidArgumentError(f"device must be None or a CUDA ordinal >= 0, got {device!r}")
        ordinal = -1 if device is None else device
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            _capi.check(self._lib.kiln_engine_load_bytes_on_device(
                data, len(data), ordinal, ctypes.byref(self._handle)))
        else:
            _capi.check(self._lib.kiln_engine_load_file_on_device(
                _c_path(source, "engine path"), ordinal, ctypes.byref(self._handle)))
        self.inputs: list[Binding] = self._bindings(1)
        self.outputs: list[Binding] = self._bindings(0)

    def _bindings(self, is_input: int) -> list[Binding]:
        count = ctypes.c_size_t()
        _capi.check(self._lib.kiln_engine_num_bindings(self._handle, is_input,
                                                       ctypes.byref(count)))
        bindings = []
        for i in range(count.value):
            name = ctypes.c_char_p()
            dtype = ctypes.c_int()
            ndim = ctypes.c_int32()
            shape = ctypes.POINTER(ctypes.c_int64)()
            _capi.check(self._lib.kiln_engine_binding(
                self._handle, is_input, i, ctypes.byref(name), ctypes.byref(dtype),
                ctypes.byref(ndim), ctypes.byref(shape)))
            dims = tuple(int(shape[d]) for d in range(ndim.value))
            bindings.append(Binding(name.value.decode(), _KILN_TO_NUMPY.get(dtype.value),
                                    _KILN_DTYPE_NAMES.get(dtype.value, f"dtype({dtype.value})"),
                                    dims))
        return bindings

    @property
    def backend(self) -> str:
        out = ctypes.c_char_p()
        _capi.check(self._lib.kiln_engine_backend(self._handle, ctypes.byref(out)))
        return out.value.decode()

    @property
    def metadata(self) -> dict:
        out = ctypes.c_char_p()
        _capi.check(self._lib.kiln_engine_metadata(self._handle, ctypes.byref(out)))
        return json.loads(out.value.decode() or "{}")

    @contextlib.contextmanager
    def _leased_context(self):
        """An execution context for this call alone: an idle one from the pool or a new one,
        given back when the block ends (released instead if the Engine was closed meanwhile)."""
        with self._lock:
            if not self._handle:
                raise InvalidArgumentError("kiln.Engine is closed")
            if self._idle:
                context = self._idle.pop()
            else:
                context = ctypes.c_void_p()
                _capi.check(self._lib.kiln_context_create(self._handle, ctypes.byref(context)))
            graphs = self._cuda_graphs
            threads = self._threads
        try:
            if graphs is not None:
                _capi.check(self._lib.kiln_context_set_cuda_graphs(context, int(graphs)))
            _capi.check(self._lib.kiln_context_set_threads(context, threads))
            yield context
        finally:
            with self._lock:
                if self._handle:
                    self._idle.append(context)
                    context = None
            if context is not None:
                self._lib.kiln_context_release(context)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the engine. ``feeds`` maps input names to arrays (converted with np.asarray but
        never cast: a dtype or shape that does not match the binding is an error). Returns the
        outputs by name, in the engine's output order, as arrays the caller owns."""
        names = []
        arrays = []  # keeps the contiguous copies alive during the call
        shapes = []
        tensors = (_capi.KilnTensor * max(len(feeds), 1))()
        for i, (name, value) in enumerate(feeds.items()):
            array = np.asarray(value)
            # Kernels read dense, naturally aligned elements (the runtime refuses other buffers):
            # a strided, Fortran-order or unaligned array (a view into a byte buffer) is copied.
            # (np.ascontiguousarray would make 0-d arrays 1-d.)
            if not array.flags.c_contiguous or not array.flags.aligned:
                array = array.copy(order="C")
            if array.dtype.byteorder == ">":
                array = array.astype(array.dtype.newbyteorder("<"))
            code = _binding_code(array.dtype, next((b for b in self.inputs if b.name == name), None))
            if code is None:
                raise InvalidArgumentError(
                    f"input '{name}': numpy dtype {array.dtype} has no kiln equivalent "
                    f"(kiln takes {', '.join(sorted(str(d) for d in _NUMPY_TO_KILN))})")
            if code in _SIGNED_SUB_BYTE and array.dtype != np.int8:
                array = array.astype(np.int8)  # ml_dtypes' int4/int2 bytes hold the low bits alone
            shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
            arrays.append(array)
            shapes.append(shape)
            names.append(_c_string(name, "input name"))
            tensors[i].dtype = code
            tensors[i].ndim = array.ndim
            tensors[i].shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
            tensors[i].data = array.ctypes.data if array.size else None
        c_names = (ctypes.c_char_p * max(len(names), 1))(*names)
        results = {}
        with self._leased_context() as context:
            _capi.check(self._lib.kiln_context_execute(context, len(names), c_names, tensors, None))
            # Copied out before the context goes back to the pool: its outputs live only until
            # its next execute.
            for binding in self.outputs:
                out = _capi.KilnTensor()
                _capi.check(self._lib.kiln_context_output(context, binding.name.encode(),
                                                          ctypes.byref(out)))
                dtype = _KILN_TO_NUMPY.get(out.dtype)
                if dtype is None:
                    raise InternalError(f"output '{binding.name}' has unknown dtype {out.dtype}")
                shape = tuple(int(out.shape[d]) for d in range(out.ndim))
                count = int(np.prod(shape, dtype=np.int64)) if shape else 1
                result = np.empty(shape, dtype=dtype)
                if count > 0:
                    ctypes.memmove(result.ctypes.data, out.data, count * dtype.itemsize)
                    if out.dtype in _SIGNED_SUB_BYTE and dtype != np.int8:
                        result.view(np.uint8)[...] &= _SIGNED_SUB_BYTE[out.dtype]
                results[binding.name] = result
        return results

    def __call__(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self.run(feeds)

    def run_bound(self, inputs: Mapping[str, tuple], outputs: Mapping[str, tuple],
                  stream: int | None = None) -> dict[str, tuple[int, ...]]:
        """Runs the engine on caller-owned buffers in the engine's memory (device pointers for a
        CUDA engine). Each value is ``(address, shape, numpy dtype)``. ``stream`` is a CUDA stream
        handle (an int) or None. For CUDA engines this enqueues the work and returns without
        synchronising. Returns each output's shape: for an output whose shape depends on the input
        data (NonZero, Unique, ...), the given shape is the buffer's capacity and the returned one
        is what was written, row-major from the buffer's start."""

        def pack(items: Mapping[str, tuple], bindings: list[Binding]):
            names = (ctypes.c_char_p * max(len(items), 1))(
                *[_c_string(n, "binding name") for n in items])
            tensors = (_capi.KilnTensor * max(len(items), 1))()
            shapes = []
            for i, (name, (address, shape, dtype)) in enumerate(items.items()):
                code = _binding_code(np.dtype(dtype), next((b for b in bindings if b.name == name), None))
                if code is None:
                    raise InvalidArgumentError(f"numpy dtype {dtype} has no kiln equivalent")
                dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
                shapes.append(dims)
                tensors[i].dtype = code
                tensors[i].ndim = len(shape)
                tensors[i].shape = ctypes.cast(dims, ctypes.POINTER(ctypes.c_int64))
                tensors[i].data = address or None
            return names, tensors, shapes

        in_names, in_tensors, in_shapes = pack(inputs, self.inputs)
        out_names, out_tensors, out_shapes = pack(outputs, self.outputs)
        with self._leased_context() as context:
            _capi.check(self._lib.kiln_context_execute_bound(
                context, len(inputs), in_names, in_tensors, len(outputs), out_names, out_tensors,
                ctypes.c_void_p(stream) if stream else None))
            written = {}
            for binding in self.outputs:
                ndim = ctypes.c_int32()
                dims = ctypes.POINTER(ctypes.c_int64)()
                _capi.check(self._lib.kiln_context_output_shape(
                    context, binding.name.encode(), ctypes.byref(ndim), ctypes.byref(dims)))
                written[binding.name] = tuple(int(dims[d]) for d in range(ndim.value))
        del in_shapes, out_shapes  # kept alive until the call returned
        return written

    def set_cuda_graphs(self, enabled: bool) -> None:
        """CUDA engines: replay a captured CUDA graph per input-shape set (default) or not. Applies
        to every later call, whichever context of the pool runs it."""
        with self._lock:
            if not self._handle:
                raise InvalidArgumentError("kiln.Engine is closed")
            self._cuda_graphs = bool(enabled)
            for context in self._idle:
                _capi.check(self._lib.kiln_context_set_cuda_graphs(context, int(enabled)))

    def set_threads(self, threads: int | None) -> None:
        """CPU engines: the number of threads each call's kernels split their work over (the
        calling thread included). None or 0 restores the default: the CPUs this process may use
        divided by the number of live CPU contexts (at least 1), so calls running at once on
        several threads share the cores instead of oversubscribing them. At most 1024. Applies to
        every later call, whichever context of the pool runs it. No effect on CUDA engines."""
        threads = _check_threads(threads)
        with self._lock:
            if not self._handle:
                raise InvalidArgumentError("kiln.Engine is closed")
            self._threads = threads
            for context in self._idle:
                _capi.check(self._lib.kiln_context_set_threads(context, threads))

    @property
    def threads(self) -> int:
        """The thread count a call started now would use (the default resolved; 1 for CUDA)."""
        with self._leased_context() as context:
            out = ctypes.c_int()
            _capi.check(self._lib.kiln_context_threads(context, ctypes.byref(out)))
            return out.value

    def close(self) -> None:
        """Releases the engine and its idle contexts now (also done when the object is collected).
        Calls running on other threads finish; their contexts are released as they end."""
        lib = getattr(self, "_lib", None)
        lock = getattr(self, "_lock", None)
        if lib is None or lock is None:
            return
        with lock:
            idle, self._idle = self._idle, []
            handle, self._handle = self._handle, ctypes.c_void_p()
        for context in idle:
            lib.kiln_context_release(context)
        if handle:
            lib.kiln_engine_release(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown may have torn ctypes down already
            pass

    def __repr__(self) -> str:
        def fmt(b: Binding) -> str:
            return f"{b.name}: {b.dtype_name}{list(b.shape)}"
        return (f"kiln.Engine(inputs=[{', '.join(map(fmt, self.inputs))}], "
                f"outputs=[{', '.join(map(fmt, self.outputs))}])")


_register_dynamo_backend_if_loaded()  # last: the module is complete by now
