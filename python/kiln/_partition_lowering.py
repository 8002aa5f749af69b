"""A partition (see :mod:`kiln._partition`) -> ONNX bytes -> kiln engine bytes.

The partition's GraphModule is exported with ``torch.onnx.export(dynamo=True)``; its
parameters become initializers. Example inputs are made from the nodes' fake values: the
exporter only traces, and kiln's supported ops never depend on input values.
"""

from __future__ import annotations

import contextlib
import operator
import io
import logging
import warnings
from dataclasses import dataclass

import torch
import torch.fx

from ._capi import UnsupportedError
from ._partition import Subgraph, extract_subgraph
from ._plugin_ops import translation_table

ONNX_OPSET = 20
_log = logging.getLogger("kiln.compile")


class SymbolRanges:
    """The dynamic dims of the exported graph: sympy symbol -> :class:`kiln.DynamicDim` (its
    min, opt and max), with one example size per symbol for tracing."""

    def __init__(self, dims: dict):
        self.dims = dict(dims)
        self.examples = _distinct_examples(self.dims)

    def values(self, which: str) -> dict:
        """symbol -> size at "min", "opt", "max" or "example"."""
        if which == "example":
            return dict(self.examples)
        return {symbol: getattr(dim, which) for symbol, dim in self.dims.items()}


def _distinct_examples(dims: dict) -> dict:
    """One example size per symbol, each different: the ONNX exporter gives dims of equal example
    sizes one symbol (duck sizing), which would tie the batch to the sequence length. torch.export
    specialises sizes 0 and 1, so at least 2 where the range allows."""
    used: set[int] = set()
    examples = {}
    for symbol, dim in sorted(dims.items(), key=lambda item: str(item[0])):
        candidates = [dim.opt] + list(range(max(2, dim.min), dim.max + 1)) + [dim.opt]
        value = next((v for v in candidates if v >= 2 and v not in used), None)
        if value is None:  # no distinct size in range: share one (the exporter may tie them)
            value = dim.opt if dim.opt >= 2 else min(max(2, dim.min), dim.max)
        used.add(value)
        examples[symbol] = value
    return examples


def _concrete(dim, ranges: SymbolRanges | None, which: str) -> int:
    if isinstance(dim, int):
        return dim
    expr = dim.node.expr
    if ranges is None:  # a probe: any size the graph was traced with will do
        hint = dim.node.hint
        if hint is None:
            raise UnsupportedShapeError(f"size {expr} is data-dependent")
        return int(hint)
    unknown = expr.free_symbols - set(ranges.dims)
    if unknown:
        raise UnsupportedShapeError(
            f"size {expr} depends on sizes that are not dynamic dims given to kiln.compile "
            f"({', '.join(sorted(map(str, unknown)))}; data-dependent?)")
    return int(expr.subs(ranges.values(which)))


class UnsupportedShapeError(UnsupportedError):
    """A partition input whose shape kiln cannot describe with the dynamic dims' profiles."""


def input_shapes(val: torch.Tensor, ranges: SymbolRanges | None):
    """(example, (min, opt, max)) shapes of one partition input; the profile is None when static.
    A dim that is an expression of the symbols (a flattened batch x sequence) gets the
    expression's values at the symbols' min, opt and max (widened so that min <= opt <= max)."""
    dims = list(val.shape)
    example = [_concrete(d, ranges, "example") for d in dims]
    if ranges is None or all(isinstance(d, int) for d in dims):
        return example, None
    lo, opt, hi = ([_concrete(d, ranges, which) for d in dims]
                   for which in ("min", "opt", "max"))
    lo_shape = [min(a, b, c) for a, b, c in zip(lo, opt, hi)]
    hi_shape = [max(a, b, c) for a, b, c in zip(lo, opt, hi)]
    return example, (lo_shape, opt, hi_shape)


def _example_tensor(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # On the graph's device: the partition's constants and device arguments are there.
    if dtype.is_floating_point:
        return torch.randn(shape, dtype=torch.float32, device=device).to(dtype)
    return torch.zeros(shape, dtype=dtype, device=device)


@dataclass
class LoweredPartition:
    onnx_bytes: bytes
    input_names: list[str]
    output_names: list[str]
    profiles: dict[str, tuple]


def to_onnx(sub: Subgraph, ranges: SymbolRanges | None) -> LoweredPartition:
    """Exports the partition to ONNX. Inputs are named ``in_<i>``, outputs ``out_<i>``."""
    args = []
    dynamic_shapes = []
    profiles = {}
    input_names = [f"in_{i}" for i in range(len(sub.inputs))]
    for name, node in zip(input_names, sub.inputs):
        val = node.meta["val"]
        example, profile = input_shapes(val, ranges)
        args.append(_example_tensor(example, val.dtype, val.device))
        if profile is None:
            dynamic_shapes.append(None)
        else:
            profiles[name] = profile
            dynamic_shapes.append({i: torch.export.Dim.DYNAMIC
                                   for i, d in enumerate(val.shape) if not isinstance(d, int)})
    output_names = [f"out_{i}" for i in range(len(sub.outputs))]
    # The exporter is chatty (progress lines on stdout, deprecation warnings); keep it quiet
    # unless kiln.compile's logger is at DEBUG.
    quiet = not _log.isEnabledFor(logging.DEBUG)
    sink = io.StringIO()
    with contextlib.ExitStack() as stack:
        if quiet:
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            for name in ("onnx_ir", "onnxscript", "torch.onnx"):
                logger = logging.getLogger(name)
                stack.callback(logger.setLevel, logger.level)
                logger.setLevel(logging.ERROR)
        program = torch.onnx.export(
            sub.module, tuple(args), dynamo=True, opset_version=ONNX_OPSET,
            input_names=input_names, output_names=output_names,
            dynamic_shapes=tuple(dynamic_shapes) if profiles else None,
            optimize=True, verbose=False, external_data=False,
            custom_translation_table=translation_table(sub.module.graph) or None)
    model = program.model_proto
    return LoweredPartition(model.SerializeToString(), input_names, output_names, profiles)


def build_engine(lowered: LoweredPartition, *, precision: str, target: str,
                 device: int | None) -> bytes:
    from . import build_onnx

    # Ops without a CUDA kernel stay in PyTorch (which runs them on the GPU) rather than becoming
    # host layers of the engine.
    return build_onnx(lowered.onnx_bytes, precision=precision, target=target,
                      profiles=lowered.profiles or None, device=device, allow_host_layers=False)


@dataclass
class _Probe:
    reason: str | None
    built: bool  # whether a trial build gave the answer (else the kernel registrations did)


_PROBE_CACHE: dict[tuple, _Probe] = {}


def _probe_key(node: torch.fx.Node) -> tuple:
    def describe(arg):
        if isinstance(arg, torch.fx.Node):
            val = arg.meta.get("val")
            if isinstance(val, torch.Tensor):
                return ("tensor", val.dtype, val.dim())
            return ("node", type(val).__name__)
        if isinstance(arg, (list, tuple)):
            return tuple(describe(a) for a in arg)
        return repr(arg)

    return (str(node.target), describe(node.args),
            tuple(sorted((k, describe(v)) for k, v in node.kwargs.items())))


def probe_node(gm: torch.fx.GraphModule, node: torch.fx.Node, target: str = "cpu",
               device: int | None = None, trial_build: bool = False) -> str | None:
    """Exports ``node`` alone to ONNX and asks whether kiln runs it on ``target``. Returns None
    when it does, else the reason (the exporter's or kiln's error, first lines). The target's
    kernel registrations answer when they cover every node of the export
    (:func:`kernel_registrations_verdict`); otherwise, or with ``trial_build`` (the partitioner's
    second look at a partition that failed to build: the registrations do not see attributes or
    shapes), a float32 engine is built. Symbolic sizes are probed as static ones: the op's
    support does not depend on them."""
    from . import InvalidArgumentError, UnsupportedError

    key = (target, device) + _probe_key(node)
    cached = _PROBE_CACHE.get(key)
    if cached is not None and (cached.built or not trial_build or cached.reason is not None):
        return cached.reason
    members = [node] + [u for u in node.users if u.target is operator.getitem]
    reason = None
    built = False
    try:
        sub = extract_subgraph(gm, members)
        if not sub.inputs:
            reason = "has no tensor inputs (left to PyTorch)"
        else:
            lowered = to_onnx(sub, None)
            verdict = kernel_registrations_verdict(lowered.onnx_bytes, target)
            reason = verdict.refusal
            if reason is None and (trial_build or not verdict.conclusive):
                built = True
                build_engine(lowered, precision="fp32", target=target, device=device)
    except (UnsupportedError, InvalidArgumentError) as error:
        # Only what kiln says about the model; a missing library or an internal error is not
        # a property of the op and propagates.
        reason = "kiln: " + _first_lines(str(error))
    except UnsupportedShapeError as error:
        reason = str(error)
    except Exception as error:  # the exporter failing on one op is a fallback, not a failure
        reason = f"ONNX export failed: {type(error).__name__}: {_first_lines(str(error))}"
    _PROBE_CACHE[key] = _Probe(reason, built)
    return reason


@dataclass
class RegistrationsVerdict:
    """What a backend's kernel registrations say about a model: ``refusal`` names the first node
    they refuse (None if none); ``conclusive`` says they spoke for every node (each a
    standard-domain op with a kernel of its name and known dtypes), so that no trial build can
    add to their answer short of attributes and shapes."""

    refusal: str | None
    conclusive: bool


def kernel_registrations_verdict(onnx_bytes: bytes, target: str) -> RegistrationsVerdict:
    """Asks ``kiln.supports`` about each node of the exported ONNX model whose op has a kernel on
    ``target`` and whose input dtypes ONNX's shape inference knows. Ops without a kernel of their
    name (the importer may rewrite them), plugin domains and nodes of unknown dtypes make the
    verdict inconclusive, as does a ``target`` whose backend is not in this runtime."""
    import onnx

    from . import NotFoundError, supports

    try:
        model = onnx.shape_inference.infer_shapes(onnx.load_from_string(onnx_bytes))
    except Exception:  # inference failing is the build's to report
        return RegistrationsVerdict(None, False)
    graph = model.graph
    dtypes = {v.name: v.type.tensor_type.elem_type
              for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    dtypes.update({init.name: init.data_type for init in graph.initializer})
    known_ops: dict[str, bool] = {}
    conclusive = True
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            conclusive = False
            continue
        if node.op_type not in known_ops:
            try:
                known_ops[node.op_type] = supports(node.op_type, [], backend=target) is None
            except NotFoundError:
                return RegistrationsVerdict(None, False)
        if not known_ops[node.op_type]:
            conclusive = False
            continue
        inputs = [dtypes.get(name, 0) if name else -1 for name in node.input]
        outputs = [dtypes.get(name, 0) for name in node.output]
        if any(code == 0 for code in inputs + outputs):
            conclusive = False
            continue
        reason = supports(node.op_type, inputs, backend=target, output_dtypes=outputs)
        if reason is not None:
            return RegistrationsVerdict(
                f"kiln: node '{node.name}' ({node.op_type}) on {target}: {reason}", True)
    return RegistrationsVerdict(None, conclusive and len(graph.node) > 0)


def refused_by_kernel_registrations(onnx_bytes: bytes, target: str) -> str | None:
    """The reason the kernel registrations of ``target`` refuse a node of the model, else None
    (see :func:`kernel_registrations_verdict`)."""
    return kernel_registrations_verdict(onnx_bytes, target).refusal


def _first_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[:count])
