"""A kiln engine against ONNX Runtime: both run the same inputs and each output's error is reported.

    python -m kiln.compare MODEL.onnx ENGINE.kiln [--input NAME=FILE.npy ...] [--seed N]
                           [--atol X] [--rtol X] [--json]

exits 0 when every output is within ``|kiln - ort| <= atol + rtol * |ort|``, 1 when one is not,
2 on a usage error. From Python: ``kiln.compare(model, engine, feeds=None, atol=, rtol=)`` returns
a :class:`Comparison`. (The C++ CLI compares with saved outputs: ``kiln compare``.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from ._capi import InvalidArgumentError, KilnError, UnsupportedError

__all__ = ["compare", "compare_engines", "Comparison", "OutputComparison", "main"]


@dataclass
class OutputComparison:
    """One output: the largest absolute and relative errors, the mean absolute error and the
    elements outside the tolerance (NaN matches NaN only); ``problem`` names a shape or dtype
    mismatch instead."""

    name: str
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    mean_abs_error: float = 0.0
    mismatches: int = 0
    elements: int = 0
    problem: str = ""
    # Cosine similarity of the two outputs as flat vectors (None when either has a NaN or is
    # all zeros), and for outputs of rank >= 2 with more than one class on the last axis the
    # share of rows whose argmax agrees (a classifier's top-1 agreement).
    cosine: float | None = None
    top1_agreement: float | None = None

    @property
    def passed(self) -> bool:
        return not self.problem and self.mismatches == 0


@dataclass
class Comparison:
    atol: float
    rtol: float
    outputs: list[OutputComparison] = field(default_factory=list)
    label: str = "kiln vs onnxruntime"

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def __str__(self) -> str:
        lines = [f"{self.label} (atol {self.atol:g}, rtol {self.rtol:g})"]
        for o in self.outputs:
            status = "PASS" if o.passed else "FAIL"
            if o.problem:
                lines.append(f"{status} {o.name}: {o.problem}")
            else:
                lines.append(f"{status} {o.name}: max abs {o.max_abs_error:.3e}, max rel "
                             f"{o.max_rel_error:.3e}, mean abs {o.mean_abs_error:.3e}, "
                             f"{o.mismatches} of {o.elements} outside tolerance"
                             + (f", cosine {o.cosine:.6f}" if o.cosine is not None else "")
                             + (f", top-1 agreement {o.top1_agreement:.2%}"
                                if o.top1_agreement is not None else ""))
        lines.append("all outputs match" if self.passed else "outputs differ")
        return "\n".join(lines)


def _random_feeds(engine, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for b in engine.inputs:
        if b.is_dynamic:
            raise InvalidArgumentError(
                f"input '{b.name}' has dynamic dims {list(b.shape)}: pass feeds (or --input)")
        if b.dtype is None:
            raise UnsupportedError(f"input '{b.name}' ({b.dtype_name}) has no numpy dtype to draw")
        if b.dtype == np.bool_:
            feeds[b.name] = rng.integers(0, 2, b.shape).astype(np.bool_)
        elif np.issubdtype(b.dtype, np.integer):
            feeds[b.name] = rng.integers(0, 4, b.shape).astype(b.dtype)
        else:
            feeds[b.name] = rng.uniform(-1, 1, b.shape).astype(b.dtype)
    return feeds


def _compare_output(name: str, got: np.ndarray, want: np.ndarray, atol: float,
                    rtol: float, other: str = "onnxruntime") -> OutputComparison:
    if got.shape != want.shape:
        return OutputComparison(name, problem=f"shape {list(got.shape)}, {other} {list(want.shape)}")
    result = OutputComparison(name, elements=int(got.size))
    if got.size == 0:
        return result
    a, b = got.astype(np.float64), want.astype(np.float64)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = nan_a & nan_b
    one = nan_a ^ nan_b
    with np.errstate(invalid="ignore"):
        diff = np.where(a == b, 0.0, np.abs(a - b))  # equal infinities differ by 0
    diff = np.where(both, 0.0, diff)
    finite = ~(nan_a | nan_b)
    result.max_abs_error = float(np.inf) if one.any() else float(diff[finite].max(initial=0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = diff / np.maximum(np.abs(b), 1e-30)
    result.max_rel_error = float(np.inf) if one.any() else float(rel[finite].max(initial=0.0))
    result.mean_abs_error = float(diff[finite].sum() / got.size)
    with np.errstate(invalid="ignore"):
        outside = ~(diff <= atol + rtol * np.abs(b))
    result.mismatches = int((outside & finite).sum() + one.sum())
    if not (nan_a.any() or nan_b.any()) and np.isfinite(a).all() and np.isfinite(b).all():
        norms = float(np.linalg.norm(a)) * float(np.linalg.norm(b))
        if norms > 0:
            result.cosine = float(np.dot(a.ravel(), b.ravel()) / norms)
    if a.ndim >= 2 and a.shape[-1] > 1:
        result.top1_agreement = float((a.argmax(axis=-1) == b.argmax(axis=-1)).mean())
    return result


def compare(model: Any, engine: Any, feeds: Mapping[str, Any] | None = None, *,
            atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0) -> Comparison:
    """Runs ``engine`` (a kiln.Engine, engine bytes or an engine file path) and ONNX Runtime on
    ``model`` (a path, serialized bytes or an onnx.ModelProto) with the same inputs, ``feeds`` or
    random ones (static inputs only; floats in [-1, 1), integers in [0, 4)), and compares each
    engine output with ONNX Runtime's of the same name. Raises UnsupportedError without
    onnxruntime, KilnError when ONNX Runtime fails, and what kiln.Engine raises."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UnsupportedError("kiln.compare needs onnxruntime (pip install onnxruntime)") from e
    engine = _as_engine(engine)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, bytearray, memoryview)):
        model = os.fspath(model)
    feeds = _random_feeds(engine, seed) if feeds is None else {k: np.asarray(v) for k, v in feeds.items()}
    got = engine.run(feeds)
    try:
        session = ort.InferenceSession(model if isinstance(model, str) else bytes(model),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        want = dict(zip(names, session.run(None, feeds)))
    except Exception as e:  # ORT's own exception types
        raise KilnError(f"onnxruntime failed on the model: {e}") from e
    return _compare_outputs(got, want, Comparison(atol, rtol), "onnxruntime")


def _compare_outputs(got: Mapping[str, np.ndarray], want: Mapping[str, Any], result: Comparison,
                     other: str) -> Comparison:
    """Each output of ``got`` against ``want``'s of the same name (``other`` names the reference
    in the problems reported), appended to ``result``."""
    for name, value in got.items():
        if name not in want:
            result.outputs.append(OutputComparison(name, problem=f"{other} has no output of this name"))
            continue
        reference = np.asarray(want[name])
        if value.dtype != reference.dtype:
            result.outputs.append(OutputComparison(name, problem=f"dtype {value.dtype}, {other} {reference.dtype}"))
            continue
        result.outputs.append(_compare_output(name, value, reference, result.atol, result.rtol, other))
    return result


def _as_engine(engine: Any):
    from . import Engine

    if isinstance(engine, Engine):
        return engine
    return Engine(engine if isinstance(engine, (bytes, bytearray, memoryview)) else os.fspath(engine))


def compare_engines(engine_a: Any, engine_b: Any, feeds: Mapping[str, Any] | None = None, *,
                    atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0) -> Comparison:
    """Runs two kiln engines (kiln.Engine objects, engine bytes or engine file paths) on the same
    inputs, ``feeds`` or random ones drawn for ``engine_a`` as :func:`compare` draws them, and
    compares each output of ``engine_a`` with ``engine_b``'s of the same name (``engine_b`` is
    the reference of the relative error): a quantized or reduced-precision engine against the
    float32 engine of the same model. Each output reports the errors, the cosine similarity and,
    for a classifier's scores, the top-1 agreement. Raises what kiln.Engine raises."""
    a, b = _as_engine(engine_a), _as_engine(engine_b)
    feeds = _random_feeds(a, seed) if feeds is None else {k: np.asarray(v) for k, v in feeds.items()}
    got, want = a.run(feeds), b.run(feeds)
    return _compare_outputs(got, want, Comparison(atol, rtol, label="engine a vs engine b"), "engine b")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiln.compare",
                                     description="Compare a kiln engine with ONNX Runtime.")
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("engine", help="the kiln engine built from it")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                        help="the value of an input; others are random (static inputs only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        from . import Engine

        engine = Engine(args.engine)
        feeds = None
        if args.input:
            feeds = {}
            for item in args.input:
                name, sep, path = item.partition("=")
                if not sep or not name or not path:
                    parser.error(f"--input: expected NAME=FILE.npy, got {item!r}")
                feeds[name] = np.load(path)
            feeds = {**_random_feeds_for_missing(engine, feeds, args.seed), **feeds}
        result = compare(args.model, engine, feeds, atol=args.atol, rtol=args.rtol, seed=args.seed)
    except (KilnError, OSError) as e:
        print(f"python -m kiln.compare: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"atol": result.atol, "rtol": result.rtol, "passed": result.passed,
                          "outputs": [{**asdict(o), "passed": o.passed} for o in result.outputs]}))
    else:
        print(result)
    return 0 if result.passed else 1


def _random_feeds_for_missing(engine, given: Mapping[str, Any], seed: int) -> dict[str, np.ndarray]:
    missing = [b for b in engine.inputs if b.name not in given]
    if not missing:
        return {}

    class _Only:
        inputs = missing

    return _random_feeds(_Only, seed)


class _CallableModule(types.ModuleType):
    """``import kiln.compare`` binds this module as ``kiln.compare``: calling it calls compare()."""

    def __call__(self, *args, **kwargs) -> Comparison:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
