"""``kiln.quantize``: post-training quantization of an ONNX model into explicit Q/DQ form.

The result is the kind of graph TensorRT's explicit quantization and ONNX Runtime's QDQ format
take: every Conv, Gemm and MatMul with a constant weight gets a QuantizeLinear/DequantizeLinear
pair on its activation input (one per-tensor scale from calibration) and a DequantizeLinear on its
weight (stored quantized, one symmetric scale per output channel). Biases and every other op stay
in floating point; which precision each layer then runs in is the builder's business (the graph
says it, strongly typed). ``dtype="int8"`` quantizes symmetrically to int8 (zero point 0, levels
-127..127), ``dtype="fp8"`` to float8 E4M3 (largest value 448).

Calibration runs the float model as a kiln CPU engine over the caller's batches with every
tensor to quantize made an output, and picks each scale with the chosen observer
(:mod:`kiln._calibration`). The chosen ranges can be written to a cache file and read back, so
that later builds quantize identically without calibration data.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._calibration import METHODS, RangeObserver
from ._capi import InvalidArgumentError, UnsupportedError

__all__ = ["quantize", "QuantizationReport"]

_log = logging.getLogger("kiln.quantize")
_DTYPES = {"int8": (127.0, 13), "fp8": (448.0, 19)}  # largest magnitude, minimum opset
_QUANTIZABLE = ("Conv", "Gemm", "MatMul")
_CACHE_FORMAT = "kiln-calibration"


@dataclass
class QuantizationReport:
    """What :func:`quantize` did: the nodes it quantized, those it left in floating point (with
    the reason) and each activation's chosen range."""

    dtype: str
    method: str
    quantized: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    amax: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"kiln.quantize ({self.dtype}, {self.method}): {len(self.quantized)} node(s) "
                 f"quantized, {len(self.kept)} kept in floating point"]
        lines += [f"  kept {name}: {reason}" for name, reason in self.kept.items()]
        return "\n".join(lines)


def _export_module(module, calibration_batches):
    """A torch module to ONNX (torch.onnx.export, dynamo exporter, opset 20), traced with the
    first calibration batch, and the batches as ONNX feeds. Batches are tensors (one input),
    tuples of tensors (positional inputs) or dicts keyed by ``forward``'s parameter names; the
    model keeps the first batch's shapes."""
    import inspect

    import onnx
    import torch

    batches = list(calibration_batches or [])
    if not batches:
        raise InvalidArgumentError("kiln.quantize: a torch module needs calibration batches (its "
                                   "first one is the export's example input)")
    parameters = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def as_args(batch, index):
        if isinstance(batch, torch.Tensor) or isinstance(batch, np.ndarray):
            batch = (batch,)
        if isinstance(batch, Mapping):
            unknown = [k for k in batch if k not in parameters]
            if unknown:
                raise InvalidArgumentError(f"kiln.quantize: calibration batch {index} names "
                                           f"{unknown}, not parameters of forward {parameters}")
            batch = tuple(batch[p] for p in parameters if p in batch)
        if not isinstance(batch, (tuple, list)) or len(batch) > len(parameters):
            raise InvalidArgumentError(f"kiln.quantize: calibration batch {index} is not a tensor, "
                                       f"a tuple of tensors or a dict by forward's parameters")
        return tuple(torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x)
                     for x in batch)

    first = as_args(batches[0], 0)
    names = parameters[:len(first)]
    module = module.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, first, dynamo=True, opset_version=20,
                                    input_names=names, optimize=True, verbose=False,
                                    external_data=False)
    model = onnx.ModelProto()
    model.CopyFrom(program.model_proto)
    feeds = [{n: a.detach().cpu().numpy() for n, a in zip(names, as_args(b, i))}
             for i, b in enumerate(batches)]
    return model, feeds


def _load(model: Any):
    import onnx

    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_model_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise InvalidArgumentError(
        "kiln.quantize: model must be a torch.nn.Module, an ONNX file path, serialized bytes or an "
        f"onnx.ModelProto, got {type(model).__name__}")


def _is_torch_module(model: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _opset(model) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _weight_axis(node, weight: np.ndarray) -> int | None:
    """The weight's output-channel axis (one scale each), None for a per-tensor scale."""
    if node.op_type == "Conv":
        return 0 if weight.ndim >= 2 else None
    if weight.ndim < 2:
        return None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return weight.ndim - 1  # MatMul: [.., K, N]


def _select(model, exclude: set[str], report: QuantizationReport):
    """The nodes to quantize and the activation tensors they read."""
    from onnx import TensorProto, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    chosen = []
    for node in model.graph.node:
        if node.op_type not in _QUANTIZABLE:
            continue
        name = node.name or f"{node.op_type}({', '.join(node.output)})"
        if node.name in exclude or node.op_type in exclude:
            report.kept[name] = "excluded by the caller"
            continue
        if len(node.input) < 2 or node.input[1] not in initializers:
            report.kept[name] = "its second input is not a constant weight"
            continue
        weight = initializers[node.input[1]]
        if weight.data_type != TensorProto.FLOAT:
            report.kept[name] = (f"its weight is {TensorProto.DataType.Name(weight.data_type)}, "
                                 "not FLOAT")
            continue
        if node.input[0] in initializers:
            report.kept[name] = "its first input is a constant"
            continue
        chosen.append((node, name, numpy_helper.to_array(weight)))
    return chosen


def _batches(calibration_batches: Iterable[Any], input_names: Sequence[str]):
    for index, batch in enumerate(calibration_batches):
        if isinstance(batch, Mapping):
            feeds = {str(k): np.asarray(v) for k, v in batch.items()}
        elif len(input_names) == 1:
            feeds = {input_names[0]: np.asarray(batch)}
        else:
            raise InvalidArgumentError(
                f"kiln.quantize: calibration batch {index} is a {type(batch).__name__}; a model "
                f"with inputs {list(input_names)} needs a dict of arrays by input name")
        missing = [n for n in input_names if n not in feeds]
        if missing:
            raise InvalidArgumentError(f"kiln.quantize: calibration batch {index} lacks input(s) "
                                       f"{missing}")
        yield feeds


def _observe(model, tensors: list[str], calibration_batches) -> dict[str, RangeObserver]:
    """Runs the float model as a CPU engine with ``tensors`` as extra outputs over the batches,
    twice (range, then histogram)."""
    import kiln
    from onnx import helper

    initializers = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in initializers]
    batches = list(_batches(calibration_batches, input_names))
    if not batches:
        raise InvalidArgumentError("kiln.quantize: no calibration batches were given")
    observed = model.__class__()
    observed.CopyFrom(model)
    outputs = {o.name for o in observed.graph.output}
    for name in tensors:
        if name not in outputs and name not in input_names:
            observed.graph.output.append(helper.make_tensor_value_info(name, 1, None))
    engine = kiln.Engine(kiln.build_onnx(observed.SerializeToString(), target="cpu"))
    observers = {name: RangeObserver() for name in tensors}

    def values(feeds):
        result = engine.run(feeds)
        for name in tensors:
            yield name, feeds[name] if name in feeds else result[name]

    try:
        for feeds in batches:
            for name, value in values(feeds):
                if np.asarray(value).dtype != np.float32:
                    raise InvalidArgumentError(
                        f"kiln.quantize: tensor '{name}' is {np.asarray(value).dtype}, not float32; "
                        "exclude the node that reads it")
                observers[name].see_range(value)
        for feeds in batches:
            for name, value in values(feeds):
                observers[name].see(value)
    finally:
        engine.close()
    return observers


def _read_cache(path: str, dtype: str, method: str, tensors: list[str]) -> dict[str, float] | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as error:
        raise InvalidArgumentError(f"kiln.quantize: calibration cache {path}: {error}") from error
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or not isinstance(
            data.get("amax"), dict):
        raise InvalidArgumentError(f"kiln.quantize: {path} is not a kiln calibration cache")
    if data.get("dtype") != dtype or data.get("method") != method:
        raise InvalidArgumentError(
            f"kiln.quantize: calibration cache {path} holds {data.get('dtype')}/"
            f"{data.get('method')} ranges, not {dtype}/{method}; delete it to calibrate again")
    amax = data["amax"]
    missing = [t for t in tensors if t not in amax]
    if missing:
        raise InvalidArgumentError(
            f"kiln.quantize: calibration cache {path} has no range for tensor(s) {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} (made for another model?); delete it to "
            "calibrate again")
    ranges = {}
    for t in tensors:
        value = amax[t]
        if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise InvalidArgumentError(f"kiln.quantize: calibration cache {path}: the range of "
                                       f"'{t}' is {value!r}, not a finite number >= 0")
        ranges[t] = float(value)
    return ranges


def _write_cache(path: str, dtype: str, method: str, amax: dict[str, float]) -> None:
    data = {"format": _CACHE_FORMAT, "version": 1, "dtype": dtype, "method": method, "amax": amax}
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1, sort_keys=True)
    os.replace(temporary, path)


def _scale(amax: np.ndarray | float, largest: float) -> np.ndarray:
    """amax / largest, with 1 where nothing was seen (a zero scale is invalid; any scale
    represents zeros)."""
    amax = np.asarray(amax, dtype=np.float64)
    return np.where(amax > 0, amax / largest, 1.0).astype(np.float32)


def _quantized_weight(weight: np.ndarray, axis: int | None, dtype: str, largest: float):
    if axis is None:
        scale = _scale(np.abs(weight).max(initial=0.0), largest)
        shaped = scale
    else:
        reduce_axes = tuple(a for a in range(weight.ndim) if a != axis)
        scale = _scale(np.abs(weight).max(axis=reduce_axes, initial=0.0), largest)
        shape = [1] * weight.ndim
        shape[axis] = -1
        shaped = scale.reshape(shape)
    scaled = weight.astype(np.float64) / shaped
    if dtype == "int8":
        return np.clip(np.round(scaled), -127, 127).astype(np.int8), scale
    return np.clip(scaled, -largest, largest).astype(np.float32), scale


def quantize(model: Any, calibration_batches: Iterable[Any] | None = None, *, dtype: str = "int8",
             method: str = "entropy", percentile: float = 99.99, exclude: Iterable[str] = (),
             cache: "str | os.PathLike | None" = None, report: bool = False):
    """Returns a copy of the ONNX ``model`` (a path, bytes or ModelProto) with Q/DQ nodes around
    its Conv, Gemm and MatMul layers (module doc), ready for ``kiln.build_onnx`` / ``kiln build``.
    A ``torch.nn.Module`` is first exported to ONNX (``torch.onnx.export``, opset 20) with the
    first calibration batch as its example input (its shapes are the model's); its batches are
    tensors, tuples of tensors or dicts keyed by ``forward``'s parameter names.

    - ``calibration_batches``: an iterable of input feeds (dicts of arrays by input name; a bare
      array for a one-input model), representative of real inputs. Not needed when ``cache``
      names an existing file.
    - ``dtype``: "int8" or "fp8" (float8 E4M3). ``method``: "minmax", "percentile" (with
      ``percentile``) or "entropy".
    - ``exclude``: node names or op types to keep in floating point (layers that lose accuracy).
    - ``cache``: a JSON file of the chosen ranges: read when it exists (then the batches are
      ignored), written after calibrating otherwise.
    - ``report``: print the :class:`QuantizationReport` (always kept as the model's
      ``kiln_quantization_report`` entry of ``metadata_props``, and logged).

    Raises InvalidArgumentError for a bad argument, a model whose default opset is too old for
    the dtype (13 for int8 per-channel scales, 19 for fp8), a malformed or mismatched cache, or a
    batch that lacks an input; UnsupportedError when no node can be quantized; and what building
    or running the float model as a kiln engine raises.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if dtype not in _DTYPES:
        raise InvalidArgumentError(f"kiln.quantize: dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
    if method not in METHODS:
        raise InvalidArgumentError(f"kiln.quantize: method must be one of {METHODS}, got {method!r}")
    if not 0.0 < float(percentile) <= 100.0:
        raise InvalidArgumentError(f"kiln.quantize: percentile must be in (0, 100], got {percentile}")
    largest, min_opset = _DTYPES[dtype]
    if _is_torch_module(model):
        model, calibration_batches = _export_module(model, calibration_batches)
    model = _load(model)
    opset = _opset(model)
    if opset < min_opset:
        raise InvalidArgumentError(
            f"kiln.quantize: the model's default-domain opset is {opset}; {dtype} Q/DQ needs "
            f"opset {min_opset} or later (onnx.version_converter.convert_version can raise it)")
    exclude = {str(e) for e in exclude}
    result = QuantizationReport(dtype=dtype, method=method)
    chosen = _select(model, exclude, result)
    if not chosen:
        raise UnsupportedError("kiln.quantize: no Conv, Gemm or MatMul with a constant float weight "
                               "to quantize" + (f" ({result})" if result.kept else ""))
    activations = list(dict.fromkeys(node.input[0] for node, _, _ in chosen))
    cache_path = os.fspath(cache) if cache is not None else None
    amax = _read_cache(cache_path, dtype, method, activations) if cache_path else None
    if amax is None:
        if calibration_batches is None:
            raise InvalidArgumentError("kiln.quantize: calibration_batches are needed (no cache "
                                       "file to read the ranges from)")
        observers = _observe(model, activations, calibration_batches)
        amax = {t: observers[t].threshold(method, float(percentile), int(largest) if dtype == "int8"
                                          else 128) for t in activations}
        for t, observer in observers.items():
            if observer.nonfinite:
                _log.warning("kiln.quantize: tensor '%s' held %d NaN/infinite value(s) in the "
                             "calibration batches (left out of its range)", t, observer.nonfinite)
        if cache_path:
            _write_cache(cache_path, dtype, method, amax)
    result.amax = dict(amax)

    q_type = TensorProto.INT8 if dtype == "int8" else TensorProto.FLOAT8E4M3FN
    prefix = "kiln_quantize/"
    new_initializers = []
    weight_outputs: dict[str, str] = {}
    activation_outputs: dict[str, str] = {}
    pending: dict[int, list] = {}  # node index -> Q/DQ nodes to insert before it

    def zero_point(name: str, count: int | None):
        dims = [] if count is None else [count]
        values = [0] * (1 if count is None else count)
        return helper.make_tensor(name, q_type, dims, values)

    node_index = {id(node): i for i, node in enumerate(model.graph.node)}
    for node, name, weight in chosen:
        inserts = pending.setdefault(node_index[id(node)], [])
        source = node.input[0]
        if source not in activation_outputs:
            scale_name, zp_name = f"{prefix}{source}/scale", f"{prefix}{source}/zero_point"
            new_initializers.append(numpy_helper.from_array(
                _scale(amax[source], largest).reshape(()), scale_name))
            new_initializers.append(zero_point(zp_name, None))
            quantized, dequantized = f"{prefix}{source}/q", f"{prefix}{source}/dq"
            inserts.append(helper.make_node("QuantizeLinear", [source, scale_name, zp_name], [quantized],
                                            name=f"{prefix}{source}/QuantizeLinear"))
            inserts.append(helper.make_node("DequantizeLinear", [quantized, scale_name, zp_name],
                                            [dequantized], name=f"{prefix}{source}/DequantizeLinear"))
            activation_outputs[source] = dequantized
        node.input[0] = activation_outputs[source]
        weight_name = node.input[1]
        if weight_name not in weight_outputs:
            axis = _weight_axis(node, weight)
            values, scale = _quantized_weight(weight, axis, dtype, largest)
            stored = f"{prefix}{weight_name}/quantized"
            if dtype == "int8":
                new_initializers.append(numpy_helper.from_array(values, stored))
            else:
                new_initializers.append(helper.make_tensor(stored, q_type, list(values.shape),
                                                           values.ravel().tolist()))
            scale_name, zp_name = f"{prefix}{weight_name}/scale", f"{prefix}{weight_name}/zero_point"
            new_initializers.append(numpy_helper.from_array(scale if axis is not None else scale.reshape(()),
                                                            scale_name))
            new_initializers.append(zero_point(zp_name, None if axis is None else int(scale.size)))
            dequantized = f"{prefix}{weight_name}/dq"
            attrs = {} if axis is None else {"axis": axis}
            inserts.append(helper.make_node("DequantizeLinear", [stored, scale_name, zp_name], [dequantized],
                                            name=f"{prefix}{weight_name}/DequantizeLinear", **attrs))
            weight_outputs[weight_name] = dequantized
        node.input[1] = weight_outputs[weight_name]
        result.quantized.append(name)

    nodes = []
    for i, node in enumerate(model.graph.node):
        nodes.extend(pending.get(i, []))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    # Float weights no longer read by any node are dropped (their quantized copies replace them).
    read = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + new_initializers)
    onnx.checker.check_model(model)
    summary = {"dtype": dtype, "method": method, "quantized": len(result.quantized),
               "kept": result.kept}
    model.metadata_props.append(onnx.StringStringEntryProto(key="kiln_quantization_report",
                                                            value=json.dumps(summary)))
    _log.info("%s", result)
    if report:
        print(result)
    return model

