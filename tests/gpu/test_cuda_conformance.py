"""Backend conformance: every op case, built for the CUDA backend, matches the CPU backend (the
reference) on the same inputs. Cases come from the ONNX Runtime op suite (tests/python) and from the
CUDA families' case lists (tests/python/cuda_cases_*.py).

Tolerances: float32 on both backends: rtol 1e-4, atol 1e-5 (summation order differs in GEMM,
convolution and reductions; no TF32); atol 1e-3 for the Reduce* family cases, whose sums over
thousands of elements the GPU accumulates in float32 and the CPU reference in double. float16 engines (precision="fp16", float32 at the edges) and
float16 tensors: max |cuda - cpu| <= 2e-2 * max(1, max |cpu|). NaN must sit where the CPU has NaN
and infinities must match in every case, and a float32 result the CPU gives as a denormal (4 or more
steps of the smallest denormal from zero) must be nonzero with its sign on CUDA: the special-value
cases of cuda_cases_elementwise.py check the scalar table's NaN/Inf rules and that no kernel flushes
denormals. Cases whose float32 inputs float16 cannot hold (float32 denormals, beyond +-65504) do
not run in fp16 engines, whose float16 edge would change them (1e-40 * inf is inf, 0 * inf NaN)."""

from __future__ import annotations

import importlib
import os
import pkgutil

import numpy as np
import pytest

import kiln
from kiln_testing import OpCase, case_from_tuple
from test_ops_vs_ort import CASES as ORT_CASES

FLOAT_TYPES = (np.float32, np.float16)


def _load_family_cases() -> list[OpCase]:
    cases = []
    import test_ops_vs_ort  # noqa: F401  ensures tests/python is importable
    for module in sorted(m.name for m in pkgutil.iter_modules([str(_tests_python())]) if m.name.startswith("cuda_cases_")):
        cases += [case_from_tuple(entry) for entry in importlib.import_module(module).CASES]
    return cases


def _tests_python():
    from pathlib import Path
    return Path(__file__).resolve().parents[1] / "python"


def _shard(cases: list[OpCase]) -> list[OpCase]:
    """KILN_CONFORMANCE_SHARD="k/n" keeps every n-th case starting at the k-th (0 <= k < n), so
    slow runs (compute-sanitizer: gpu-check's `sanitize` stage) cover a spread of every family."""
    value = os.environ.get("KILN_CONFORMANCE_SHARD", "")
    if not value:
        return cases
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise ValueError(f'KILN_CONFORMANCE_SHARD must be "k/n" with 0 <= k < n, got {value!r}') from None
    if not 0 <= k < n:
        raise ValueError(f'KILN_CONFORMANCE_SHARD must be "k/n" with 0 <= k < n, got {value!r}')
    return cases[k::n]


CASES = _shard(list(ORT_CASES) + _load_family_cases())


def _compare(got: dict, want: dict, fp16: bool, case: OpCase) -> None:
    assert list(got) == list(want)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape, f"{name}: shape cuda {out.shape}, cpu {ref.shape}"
        assert out.dtype == ref.dtype, f"{name}: dtype cuda {out.dtype}, cpu {ref.dtype}"
        if not np.issubdtype(ref.dtype, np.floating):
            np.testing.assert_array_equal(out, ref, err_msg=name)
            continue
        if fp16 or ref.dtype == np.float16:
            ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
            np.testing.assert_array_equal(np.isnan(out64), np.isnan(ref64), err_msg=f"{name}: NaN positions")
            finite = np.isfinite(ref64)
            np.testing.assert_array_equal(out64[~finite & ~np.isnan(ref64)], ref64[~finite & ~np.isnan(ref64)],
                                          err_msg=f"{name}: infinities")
            if not finite.any():
                continue
            scale = max(1.0, float(np.max(np.abs(ref64[finite]))))
            err = float(np.max(np.abs(out64[finite] - ref64[finite])))
            assert err <= 2e-2 * scale, f"{name}: max abs error {err} vs scale {scale}"
        else:
            # assert_allclose also requires NaN where ref has NaN and equal infinities.
            np.testing.assert_allclose(out, ref, rtol=max(case.rtol, 1e-4), atol=max(case.atol, 1e-5),
                                       err_msg=name)
            info = np.finfo(ref.dtype)
            denormal = (np.abs(ref) >= 4 * info.smallest_subnormal) & (np.abs(ref) < info.tiny)
            np.testing.assert_array_equal(np.sign(out[denormal]), np.sign(ref[denormal]),
                                          err_msg=f"{name}: denormal results flushed to zero")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cuda_matches_cpu(case: OpCase):
    model = case.model().SerializeToString()
    feeds = case.feeds
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    cuda_engine = kiln.Engine(kiln.build_onnx(model, target="cuda"))
    assert cuda_engine.backend == "cuda"
    _compare(cuda_engine.run(feeds), cpu, False, case)


# float16 compute is checked on ops whose result moves smoothly with rounding of their inputs
# (not Floor/Round/comparisons/Mod, where one ulp flips the answer).
FP16_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "InstanceNormalization", "GroupNormalization",
    "DepthToSpace", "SpaceToDepth", "CumSum", "BatchNormalization", "LayerNormalization", "Softmax", "LogSoftmax",
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "Erf", "HardSigmoid", "HardSwish", "Add", "Sub",
    "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum",
    "ReduceMax", "Transpose", "Concat", "Split", "Slice", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Expand", "Gather", "Pad", "Resize", "Identity", "Where", "Clip",
}
def _float16_holds(value: np.ndarray) -> bool:
    if value.dtype != np.float32:
        return True
    magnitude = np.abs(value[np.isfinite(value)])
    return not np.any((magnitude > 0) & (magnitude < np.finfo(np.float16).smallest_subnormal)) \
        and not np.any(magnitude > np.finfo(np.float16).max)


FP16_CASES = [c for c in CASES
              if {n.op_type for n in c.nodes} <= FP16_OPS
              and any(v.dtype == np.float32 for v in c.feeds.values())
              and all(_float16_holds(v) for v in c.feeds.values())]


@pytest.mark.parametrize("case", FP16_CASES, ids=[c.id for c in FP16_CASES])
def test_cuda_fp16_engine_matches_cpu(case: OpCase):
    model = case.model().SerializeToString()
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(case.feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", precision="fp16")).run(case.feeds)
    _compare(cuda, cpu, True, case)
