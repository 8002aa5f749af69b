"""``kiln.quantization_sensitivity``: which layer costs a quantized model its accuracy. Each
quantizable layer is quantized alone (every other kept in floating point) and run against the float
model, and the layers are ranked by how far their outputs move: the candidates for
:func:`kiln.quantize`'s ``exclude``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ._capi import InvalidArgumentError, UnsupportedError
from ._quantize import (QuantizationReport, _batches, _is_torch_module, _load, _select,
                        quantize)

__all__ = ["quantization_sensitivity", "LayerSensitivity"]


@dataclass
class LayerSensitivity:
    """How much quantizing one layer alone changes the model's outputs (every other layer kept in
    floating point), over the evaluation feeds: the lowest cosine similarity and the largest
    absolute difference over the outputs, against the float model."""

    node: str
    op_type: str
    cosine: float
    max_abs_error: float


def quantization_sensitivity(model: Any, calibration_batches: Iterable[Any], evaluation_feeds:
                             Iterable[Any] | None = None, *, dtype: str = "int8",
                             method: str = "entropy", percentile: float = 99.99
                             ) -> list[LayerSensitivity]:
    """Quantizes each quantizable layer of the ONNX ``model`` (a path, bytes or ModelProto) alone
    and measures what it does to the outputs, worst first: the layers to pass to
    :func:`quantize`'s ``exclude`` when the quantized model loses accuracy. Calibrates once
    (``calibration_batches``); ``evaluation_feeds`` (default: the calibration batches) are run
    through the float model and each one-layer quantized model as kiln CPU engines. Layers without a node name cannot be singled out and are
    left out. Raises as :func:`quantize` does."""
    import tempfile

    import kiln

    if _is_torch_module(model):
        raise InvalidArgumentError("kiln.quantization_sensitivity takes an ONNX model; export the "
                                   "module with torch.onnx.export first")
    model = _load(model)
    batches = list(calibration_batches)
    initializers = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in initializers]
    feeds = list(_batches(batches if evaluation_feeds is None else evaluation_feeds, input_names))
    candidates = [(node, name) for node, name, _ in _select(model, set(), QuantizationReport(dtype, method))
                  if node.name]
    if not candidates:
        raise UnsupportedError("kiln.quantization_sensitivity: no named Conv, Gemm or MatMul with a "
                               "constant float weight to quantize")

    def outputs(model_proto) -> list[dict]:
        engine = kiln.Engine(kiln.build_onnx(model_proto.SerializeToString(), target="cpu"))
        try:
            return [engine.run(f) for f in feeds]
        finally:
            engine.close()

    reference = outputs(model)
    names = [node.name for node, _ in candidates]
    results = []
    with tempfile.TemporaryDirectory() as directory:
        cache = os.path.join(directory, "ranges.json")
        quantize(model, batches, dtype=dtype, method=method, percentile=percentile, cache=cache)
        for node, name in candidates:
            single = quantize(model, None, dtype=dtype, method=method, percentile=percentile,
                              cache=cache, exclude=[n for n in names if n != node.name])
            cosine, worst = 1.0, 0.0
            for got, want in zip(outputs(single), reference):
                for key, value in want.items():
                    a = np.asarray(got[key], dtype=np.float64).ravel()
                    b = np.asarray(value, dtype=np.float64).ravel()
                    if a.size == 0:
                        continue
                    worst = max(worst, float(np.abs(a - b).max()))
                    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
                    if norms > 0:
                        cosine = min(cosine, float(np.dot(a, b) / norms))
            results.append(LayerSensitivity(name, node.op_type, cosine, worst))
    results.sort(key=lambda r: (r.cosine, -r.max_abs_error))
    return results
