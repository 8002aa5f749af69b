"""The special-value cases of cuda_cases_elementwise.py (NaN, infinities, signed zeros, denormals) on
the CPU engine, against PyTorch.

The GPU conformance suite compares CUDA with the CPU on these cases; this pins the CPU (the
reference) to PyTorch's semantics, which users compare against and which kiln's scalar table
follows (src/ops/scalar_math.h). ONNX Runtime is not the reference here: where ONNX leaves NaN
handling open, it differs (e.g. Sign(NaN) is NaN in numpy and ONNX Runtime, 0 in PyTorch; Mod with
fmod=0 on floats is an error there). The reference is PyTorch in float64 on the same inputs,
rounded to the output dtype, so float32 artefacts of PyTorch's vectorised kernels (Gelu(+inf) is
NaN in float32 torch 2.13, +inf in float64) do not leak in; kiln's overflow-free Sigmoid keeps
Sigmoid(-100) = 3.7e-44, as float64 does.

Rules: bool outputs exactly; NaN exactly where the reference is NaN; the same infinities; finite
values within rtol 1e-5 / atol 1e-6 (float16 outputs: one float16 rounding apart, rtol 2e-3); where
the reference is a denormal of the output dtype (at least 4 of its smallest steps from zero, so
rounding ties do not count), kiln's value is nonzero with its sign (denormals are not flushed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cuda_cases_elementwise import SPECIAL_CASES
from kiln_testing import case_from_tuple, run_kiln

SELU_ALPHA = float(np.float32(1.67326319217681884765625))
SELU_GAMMA = float(np.float32(1.05070102214813232421875))


def _f(attrs: dict, name: str, default: float) -> float:
    return float(np.float32(attrs.get(name, default)))  # ONNX float attributes are float32


def _is_inf(x, attrs):
    negative, positive = attrs.get("detect_negative", 1), attrs.get("detect_positive", 1)
    return torch.isinf(x) & (((x > 0) & bool(positive)) | ((x < 0) & bool(negative)))


UNARY = {
    "Relu": lambda x, a: torch.relu(x),
    "Sigmoid": lambda x, a: torch.sigmoid(x),
    "Tanh": lambda x, a: torch.tanh(x),
    "Erf": lambda x, a: torch.erf(x),
    "HardSwish": lambda x, a: F.hardswish(x),
    "Sqrt": lambda x, a: torch.sqrt(x),
    "Reciprocal": lambda x, a: torch.reciprocal(x),
    "Neg": lambda x, a: torch.neg(x),
    "Exp": lambda x, a: torch.exp(x),
    "Log": lambda x, a: torch.log(x),
    "Abs": lambda x, a: torch.abs(x),
    "Sign": lambda x, a: torch.sign(x),
    "Round": lambda x, a: torch.round(x),
    "Softplus": lambda x, a: F.softplus(x),
    "Mish": lambda x, a: F.mish(x),
    "IsNaN": lambda x, a: torch.isnan(x),
    "IsInf": _is_inf,
    "Floor": lambda x, a: torch.floor(x),
    "Ceil": lambda x, a: torch.ceil(x),
    "Softsign": lambda x, a: F.softsign(x),
    "Sin": lambda x, a: torch.sin(x),
    "Cos": lambda x, a: torch.cos(x),
    "Tan": lambda x, a: torch.tan(x),
    "Asin": lambda x, a: torch.asin(x),
    "Acos": lambda x, a: torch.acos(x),
    "Atan": lambda x, a: torch.atan(x),
    "Sinh": lambda x, a: torch.sinh(x),
    "Cosh": lambda x, a: torch.cosh(x),
    "Asinh": lambda x, a: torch.asinh(x),
    "Acosh": lambda x, a: torch.acosh(x),
    "Atanh": lambda x, a: torch.atanh(x),
    "Identity": lambda x, a: x,
    "LeakyRelu": lambda x, a: F.leaky_relu(x, _f(a, "alpha", 0.01)),
    "Elu": lambda x, a: F.elu(x, _f(a, "alpha", 1.0)),
    "Celu": lambda x, a: F.celu(x, _f(a, "alpha", 1.0)),
    "Selu": lambda x, a: _f(a, "gamma", SELU_GAMMA) * torch.where(x > 0, x, _f(a, "alpha", SELU_ALPHA) * torch.expm1(x)),
    "ThresholdedRelu": lambda x, a: F.threshold(x, _f(a, "alpha", 1.0), 0.0),
    "HardSigmoid": lambda x, a: torch.clamp(_f(a, "alpha", 0.2) * x + _f(a, "beta", 0.5), 0.0, 1.0),
    "Gelu": lambda x, a: F.gelu(x, approximate=a.get("approximate", "none")),
}
BINARY = {
    "Add": lambda x, y, a: x + y,
    "Sum": lambda x, y, a: x + y,
    "Sub": lambda x, y, a: x - y,
    "Mul": lambda x, y, a: x * y,
    "Div": lambda x, y, a: x / y,
    "Mean": lambda x, y, a: (x + y) / 2,
    "Pow": lambda x, y, a: torch.pow(x, y),
    "Min": lambda x, y, a: torch.minimum(x, y),
    "Max": lambda x, y, a: torch.maximum(x, y),
    "Equal": lambda x, y, a: x == y,
    "Less": lambda x, y, a: x < y,
    "Greater": lambda x, y, a: x > y,
    "LessOrEqual": lambda x, y, a: x <= y,
    "GreaterOrEqual": lambda x, y, a: x >= y,
    "Mod": lambda x, y, a: torch.fmod(x, y) if a.get("fmod", 0) else torch.remainder(x, y),
    "PRelu": lambda x, y, a: torch.where(x < 0, x * y, x),
}


def torch_reference(case) -> np.ndarray:
    node = case.nodes[0]
    attrs = {}
    for attribute in node.attribute:
        attrs[attribute.name] = {1: attribute.f, 2: attribute.i, 3: attribute.s.decode()}[attribute.type]
    values = {**case.feeds, **case.consts}
    operands = [values.get(name) if name else None for name in node.input]
    out_dtype = next(v.dtype for v in operands if v is not None and v.dtype != np.bool_)

    def as_torch(v):
        return None if v is None else torch.from_numpy(v if v.dtype == np.bool_ else v.astype(np.float64))

    t = [as_torch(v) for v in operands]
    if node.op_type in UNARY:
        result = UNARY[node.op_type](t[0], attrs)
    elif node.op_type in BINARY:
        result = BINARY[node.op_type](t[0], t[1], attrs)
    elif node.op_type == "Where":
        result = torch.where(t[0], t[1], t[2])
    elif node.op_type == "Clip":
        low = t[1] if len(t) > 1 else None
        high = t[2] if len(t) > 2 else None
        result = torch.clamp(t[0], low, high)
    else:
        raise AssertionError(f"no PyTorch reference for {node.op_type}")
    result = result.numpy()
    if result.dtype == np.bool_:
        return result
    with np.errstate(over="ignore"):  # float64 results beyond the output dtype's range become infinities
        return result.astype(out_dtype)


def assert_special_values_match(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if want.dtype == np.bool_:
        np.testing.assert_array_equal(got, want)
        return
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions")
    infinite = np.isinf(want)
    np.testing.assert_array_equal(got[infinite], want[infinite], err_msg="infinities")
    finite = np.isfinite(want)
    rtol = 2e-3 if want.dtype == np.float16 else 1e-5
    np.testing.assert_allclose(got[finite].astype(np.float64), want[finite].astype(np.float64), rtol=rtol, atol=1e-6,
                               err_msg="finite values")
    # Results within a few ulps of zero may round either way; a flush shows on all the others.
    info = np.finfo(want.dtype)
    denormal = (np.abs(want) >= 4 * info.smallest_subnormal) & (np.abs(want) < info.tiny)
    np.testing.assert_array_equal(np.sign(got[denormal]), np.sign(want[denormal]),
                                  err_msg="denormal results must not be flushed to zero")


CASES = [case_from_tuple(entry) for entry in SPECIAL_CASES]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cpu_engine_matches_pytorch_on_special_values(case):
    got = run_kiln(case.model(), case.feeds, target="cpu")["y"]
    assert_special_values_match(got, torch_reference(case))


def test_special_cases_cover_every_float_elementwise_formula():
    covered = {case.nodes[0].op_type for case in CASES}
    expected = set(UNARY) | set(BINARY) | {"Where", "Clip"}
    assert expected <= covered, sorted(expected - covered)


def test_the_comparison_notices_a_flushed_denormal_and_a_lost_nan():
    want = np.array([1e-40, np.nan, 1.0], np.float32)
    with pytest.raises(AssertionError, match="flushed"):
        assert_special_values_match(np.array([0.0, np.nan, 1.0], np.float32), want)
    with pytest.raises(AssertionError, match="NaN positions"):
        assert_special_values_match(np.array([1e-40, 0.0, 1.0], np.float32), want)
