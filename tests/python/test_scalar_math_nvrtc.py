"""src/ops/scalar_math.h compiles with NVRTC for sm_90, as the CUDA code generator will compile it:
the header's text pasted into the source (NVRTC sees no files and has no standard headers), then
one call of every op function, for float and for double, with the argument types the table in
src/ops/scalar_ops.cpp describes (operands T or bool, then float attributes). NVRTC compiles without
a GPU, so this runs in CI; it is skipped only where libnvrtc.so.13 is absent (requirements-cuda.txt
installs the nvidia-cuda-nvrtc wheel where nvcc is present)."""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "src" / "ops" / "scalar_math.h"
TABLE = ROOT / "src" / "ops" / "scalar_ops.cpp"

# `template <typename T> KILN_SCALAR_FN R kiln_name(params)`: the form every op function has.
DECLARATION = re.compile(r"template <typename T>\s*KILN_SCALAR_FN\s+(\w+)\s+(kiln_\w+)\(([^)]*)\)")


def _nvrtc_candidates() -> list[str]:
    paths = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        paths += [str(base / "cu13" / "lib" / "libnvrtc.so.13"), str(base / "cuda_nvrtc" / "lib" / "libnvrtc.so.13")]
    return paths + ["/usr/local/cuda/lib64/libnvrtc.so.13", "libnvrtc.so.13"]


def _load_nvrtc():
    for candidate in _nvrtc_candidates():
        if "/" in candidate and not Path(candidate).exists():
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


NVRTC = _load_nvrtc()
pytestmark = pytest.mark.skipif(NVRTC is None, reason="libnvrtc.so.13 not found (pip install 'nvidia-cuda-nvrtc==13.*')")


def header_functions() -> dict[str, tuple[str, list[str]]]:
    """name -> (result type, parameter types) of the header's op functions."""
    functions = {}
    for result, name, params in DECLARATION.findall(HEADER.read_text()):
        types = [p.split()[0] for p in params.split(",") if p.strip()]
        functions[name] = (result, types)
    return functions


def table_functions() -> set[str]:
    return set(re.findall(r'"(kiln_\w+)"', TABLE.read_text()))


def compile_with_nvrtc(source: str, options: list[str]) -> tuple[int, str, int]:
    """(nvrtcResult of the compile, the program log, CUBIN bytes)."""
    program = ctypes.c_void_p()
    assert NVRTC.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"kiln_scalar_math_check.cu",
                                    0, None, None) == 0
    try:
        argv = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        result = NVRTC.nvrtcCompileProgram(program, len(options), argv)
        size = ctypes.c_size_t()
        NVRTC.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        NVRTC.nvrtcGetProgramLog(program, log)
        cubin = ctypes.c_size_t(0)
        if result == 0:
            assert NVRTC.nvrtcGetCUBINSize(program, ctypes.byref(cubin)) == 0
        return result, log.value.decode(errors="replace"), cubin.value
    finally:
        NVRTC.nvrtcDestroyProgram(ctypes.byref(program))


def call_every_function(functions: dict[str, tuple[str, list[str]]], t: str) -> str:
    """A kernel calling each function once with T = t, as the generator would."""
    lines = [f'extern "C" __global__ void kiln_scalar_math_check_{t}(const {t}* x, const bool* c, {t}* out) {{']
    for k, (name, (result, params)) in enumerate(sorted(functions.items())):
        args, operand = [], 0
        for p in params:
            if p == "T":
                args.append(f"x[{operand}]")
                operand += 1
            elif p == "bool":
                args.append(f"c[{operand}]")
                operand += 1
            else:
                assert p == "float", f"{name}: parameter type {p}"
                args.append(f"{0.25 + 0.5 * len(args)}f")
        call = f"{name}<{t}>({', '.join(args)})"
        lines.append(f"  out[{k}] = {call} ? {t}(1) : {t}(0);" if result == "bool" else f"  out[{k}] = {call};")
    # Clip with absent bounds, the way the generator fills them.
    lines.append(f"  out[{len(functions)}] = kiln_clip<{t}>(x[0], -kiln_infinity<{t}>(), kiln_infinity<{t}>());")
    lines.append("}")
    return "\n".join(lines) + "\n"


def test_every_table_function_is_an_op_function_of_the_header():
    functions = header_functions()
    assert len(functions) > 50
    missing = table_functions() - set(functions)
    assert not missing, f"scalar_ops.cpp names functions scalar_math.h lacks: {sorted(missing)}"


def test_header_compiles_with_nvrtc_for_sm90_calling_every_function():
    functions = {name: sig for name, sig in header_functions().items() if name != "kiln_infinity"}
    assert table_functions() <= set(functions)
    source = HEADER.read_text() + "\n" + call_every_function(functions, "float") + call_every_function(functions, "double")
    result, log, cubin = compile_with_nvrtc(source, ["--gpu-architecture=sm_90"])
    assert result == 0, f"NVRTC failed ({result}):\n{log}"
    assert "warning" not in log.lower(), log
    assert cubin > 0


def test_nvrtc_reports_a_broken_source():
    # The harness above would notice a header that stops compiling.
    result, log, _ = compile_with_nvrtc(HEADER.read_text() + "\n__global__ void k() { kiln_no_such_op<float>(1.0f); }\n",
                                        ["--gpu-architecture=sm_90"])
    assert result != 0
    assert "kiln_no_such_op" in log
