"""``kiln.compile``: a PyTorch module -> a module whose supported parts run as kiln engines.

Path: ``torch.export`` -> core aten (``run_decompositions``) -> the graph is partitioned into
runs of nodes kiln supports (:mod:`kiln._partition`) -> each partition -> ONNX -> kiln engine
(:mod:`kiln._partition_lowering`) -> the partition is replaced by one
``torch.ops.kiln.execute_engine([...], engine)`` call, the engine a ``torch.classes.kiln.Engine``
attribute of the returned module. Everything else stays an aten call, run by PyTorch.

The result is a ``torch.fx.GraphModule`` taking the same inputs as the original module; its
``kiln_report`` attribute (a :class:`CompileReport`) lists the engines and every node that fell
back to PyTorch, with the reason.
"""

from __future__ import annotations

import logging
import operator
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.fx

from ._capi import InvalidArgumentError, UnsupportedError
from ._partition import (SupportOracle, Decision, compute_node_count, extract_subgraph,
                         drop_constant_values, is_constant_expr, is_sym_node, op_name,
                         propose_partitions)
from ._dynamic_shapes import (DimSpecs, DynamicDim, DynamicDimInfo, DynamicShapeError,
                              explain_export_error, normalize, parameter_names, resolve_symbols,
                              torch_dims, uses)
from ._partition_lowering import (SymbolRanges, UnsupportedShapeError, build_engine, probe_node,
                                  to_onnx)
from ._example_decisions import (ExampleAssumption, export_with_example_decisions,
                                 is_data_dependent_guard)
from ._plugin_ops import batched_nms_as_one_op, fuse_batched_nms

__all__ = ["compile", "compile_graph_module", "CompileReport", "EngineInfo", "FallbackInfo",
           "FullCompilationError", "DynamicDim", "DynamicDimInfo", "DynamicShapeError"]

_log = logging.getLogger("kiln.compile")
_PRECISIONS = ("fp32", "fp16", "bf16", "tf32")
ENGINE_ATTR_PREFIX = "_kiln_engine_"


class FullCompilationError(UnsupportedError):
    """``require_full_compilation=True`` and some nodes cannot run in a kiln engine.
    ``fallbacks`` lists them (:class:`FallbackInfo`)."""

    def __init__(self, fallbacks: list["FallbackInfo"]):
        self.fallbacks = list(fallbacks)
        lines = [f"  node '{f.node}': {f.op}: {f.reason}" for f in self.fallbacks]
        super().__init__(f"kiln.compile(require_full_compilation=True): {len(lines)} node(s) "
                         "cannot run in a kiln engine:\n" + "\n".join(lines))


@dataclass
class EngineInfo:
    name: str  # the module attribute holding the engine
    node_count: int  # graph nodes the engine replaces
    compute_node_count: int  # of which not mere views/getitems
    ops: dict[str, int]
    inputs: list[str]  # "in_0: float32[-1, 3, 8, 8]"
    outputs: list[str]
    size_bytes: int


@dataclass
class FallbackInfo:
    node: str
    op: str
    reason: str


@dataclass
class CompileReport:
    precision: str
    target: str
    dynamic_batch: tuple[int, int, int] | None
    engines: list[EngineInfo] = field(default_factory=list)
    fallbacks: list[FallbackInfo] = field(default_factory=list)
    # Every dynamic dim (the batch included), with its range and the inputs' dims it sizes.
    dynamic_dims: list[DynamicDimInfo] = field(default_factory=list)
    # Data-dependent branches the export took from the example inputs, each asserted at run time
    # (kiln._example_decisions).
    assumptions: list[ExampleAssumption] = field(default_factory=list)

    @property
    def fully_compiled(self) -> bool:
        return not self.fallbacks and bool(self.engines)

    def __str__(self) -> str:
        lines = [f"kiln.compile: {len(self.engines)} engine(s) ({self.target}, {self.precision}"
                 + (f", dynamic batch {self.dynamic_batch}" if self.dynamic_batch else "")
                 + f"), {len(self.fallbacks)} node(s) left to PyTorch"]
        for e in self.engines:
            ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(e.ops.items()))
            lines.append(f"  engine {e.name}: {e.node_count} nodes ({e.compute_node_count} "
                         f"compute), {e.size_bytes} bytes; inputs [{'; '.join(e.inputs)}] "
                         f"outputs [{'; '.join(e.outputs)}]")
            lines.append(f"    ops: {ops}")
        for f in self.fallbacks:
            lines.append(f"  fallback {f.node}: {f.op}: {f.reason}")
        for d in self.dynamic_dims:
            lines.append(f"  dynamic dim {d}")
        for a in self.assumptions:
            lines.append(f"  assumed {a}")
        return "\n".join(lines)


def _runtime():
    from . import runtime

    runtime.load_library()
    return runtime


def _target_of(device: torch.device) -> tuple[str, int | None]:
    if device.type == "cpu":
        return "cpu", None
    if device.type == "cuda":
        return "cuda", device.index if device.index is not None else torch.cuda.current_device()
    raise InvalidArgumentError(f"kiln engines run on cpu or cuda devices, not {device}")


def _user_placeholders(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [node for node in gm.graph.nodes if node.op == "placeholder"]


def _describe(name: str, val) -> str:
    if not isinstance(val, torch.Tensor):
        return f"{name}: {type(val).__name__}"
    dims = [d if isinstance(d, int) else -1 for d in val.shape]
    return f"{name}: {str(val.dtype).replace('torch.', '')}{dims}"


def _batch_symbol(ranges: SymbolRanges | None):
    """The symbol of the dim named "batch" (``dynamic_batch``), if any."""
    if ranges is None:
        return None
    return next((symbol for symbol, dim in ranges.dims.items() if dim.name == "batch"), None)


def _first_batch_input(inputs, ranges: SymbolRanges | None):
    """A partition input whose dim 0 is the batch: it goes first, as the fake kernel reads the
    batch of the outputs from the first input (:func:`kiln.runtime._fake_execute_engine`)."""
    symbol = _batch_symbol(ranges)
    if symbol is None:
        return None
    for node in inputs:
        val = node.meta.get("val")
        if (isinstance(val, torch.Tensor) and val.dim() > 0 and isinstance(val.shape[0],
                                                                           torch.SymInt)
                and val.shape[0].node.expr == symbol):
            return node
    return None


@dataclass
class _Built:
    nodes: list[torch.fx.Node]
    sub: Any
    engine_bytes: bytes
    input_names: list[str]
    output_names: list[str]


def compile_graph_module(gm: torch.fx.GraphModule, *, precision: str = "fp32",
                         device: torch.device | str = "cpu",
                         dynamic_batch: tuple[int, int, int] | None = None,
                         dynamic_dims: DimSpecs | None = None,
                         input_names: Sequence[str] = (),
                         require_full_compilation: bool = False, min_block_size: int = 1,
                         probe_unknown_ops: bool = True) -> torch.fx.GraphModule:
    """Rewrites ``gm`` (an unlifted core-aten graph with ``meta["val"]`` on its nodes, as from
    ``torch.export(...).run_decompositions().module()``) in place: supported partitions become
    kiln engines. Returns ``gm`` with ``kiln_report`` set.

    ``dynamic_dims`` (input index -> {dim -> :class:`DynamicDim`}, as from
    :func:`kiln._dynamic_shapes.normalize`) says which dims of the placeholders are dynamic;
    ``dynamic_batch`` alone means dim 0 of every tensor placeholder. Each engine's input profiles
    come from the symbols torch.export gave those dims. ``input_names`` name the inputs in
    messages."""
    if precision not in _PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    target, device_index = _target_of(device)
    if target == "cpu" and precision in ("fp16", "bf16", "tf32"):
        raise InvalidArgumentError(
            f"precision={precision!r} needs CUDA engines: kiln's cpu target builds float32 "
            "engines only (a float16/bfloat16 module still compiles for the cpu with "
            "precision='fp32': its engines then take and return its 16-bit tensors)")
    placeholders = _user_placeholders(gm)
    if dynamic_dims is None and dynamic_batch is not None:
        vals = [n.meta.get("val") for n in placeholders]
        dynamic_dims = normalize(None, dynamic_batch, vals, input_names, check_examples=False)
    ranges = None
    if dynamic_dims:
        ranges = SymbolRanges(resolve_symbols(placeholders, dynamic_dims, input_names))

    _drop_metadata_assertions(gm)
    fuse_batched_nms(gm)

    def probe(node: torch.fx.Node) -> str | None:
        return probe_node(gm, node, target, device_index)

    oracle = SupportOracle(probe=probe if probe_unknown_ops else None)
    built_cache: dict[frozenset, _Built] = {}
    while True:
        partitions = propose_partitions(gm, oracle, min_block_size)
        if require_full_compilation:
            _raise_if_fallbacks(gm, oracle, partitions)
        built: list[_Built] = []
        retry = False
        for nodes in partitions:
            key = frozenset(nodes)
            if key in built_cache:
                built.append(built_cache[key])
                continue
            result = _build_partition(gm, nodes, ranges, precision, target, device_index)
            if isinstance(result, _Built):
                built_cache[key] = result
                built.append(result)
                continue
            # The partition did not build: find its nodes kiln rejects on their own, or give up
            # on the partition as a whole.
            _log.info("partition of %d nodes failed to build (%s); probing its ops",
                      len(nodes), result)
            culprits = []
            for node in nodes:
                if node.target is operator.getitem:
                    continue
                # A build this time: the registrations that may have accepted the node do not
                # see its attributes and shapes.
                reason = probe_node(gm, node, target, device_index, trial_build=True)
                if reason is not None:
                    oracle.decisions[node] = Decision(False, reason)
                    culprits.append(FallbackInfo(node.name, op_name(node), reason))
            if not culprits:
                reason = f"its partition failed to build: {_short(str(result))}"
                for node in nodes:
                    oracle.decisions[node] = Decision(False, reason)
                culprits = [FallbackInfo(n.name, op_name(n), reason) for n in nodes
                            if n.target is not operator.getitem]
            if require_full_compilation:
                raise FullCompilationError(culprits) from result
            retry = True
            break
        if not retry:
            break

    report = CompileReport(precision=precision, target=target, dynamic_batch=(
        tuple(dynamic_batch) if dynamic_batch is not None else None))
    report.assumptions = list(getattr(gm, "kiln_example_assumptions", []))
    if dynamic_dims:
        specs = {s.name: s for per_input in dynamic_dims.values() for s in per_input.values()}
        report.dynamic_dims = [DynamicDimInfo(name, specs[name].min, specs[name].opt,
                                              specs[name].max, places)
                               for name, places in uses(dynamic_dims, input_names).items()]

    # Everything outside the engines runs in PyTorch; say why (decided before the graph is
    # rewritten: the rewrite copies the nodes).
    in_engines = {n for item in built for n in item.nodes}
    fallbacks = {}
    for node in gm.graph.nodes:
        if (node.op != "call_function" or node in in_engines or is_sym_node(node)
                or node.target is operator.getitem):
            continue
        decision = oracle.decide(node)
        if is_constant_expr(node):
            # (Listed only if it survives the rewrite: nodes outside the engines read it.)
            reason = "a computation on parameters only, left to PyTorch for the nodes that read it"
        elif decision.supported:
            reason = f"in a run of supported nodes smaller than min_block_size={min_block_size}"
        else:
            reason = decision.reason
        fallbacks[node.name] = FallbackInfo(node.name, op_name(node), reason)

    runtime = _runtime() if built else None
    replaced: dict[torch.fx.Node, torch.fx.Node] = {}
    for index, item in enumerate(built):
        name = f"{ENGINE_ATTR_PREFIX}{index}"
        engine = runtime.engine_from_bytes(item.engine_bytes, device)
        setattr(gm, name, engine)
        _replace_partition(gm, item, name, engine, replaced)
        report.engines.append(EngineInfo(
            name=name, node_count=len(item.nodes),
            compute_node_count=compute_node_count(item.nodes),
            ops=dict(Counter(op_name(n) for n in item.nodes
                             if n.target is not operator.getitem)),
            inputs=[_describe(f"in_{i}", n.meta.get("val")) for i, n in
                    enumerate(item.sub.inputs)],
            outputs=[_describe(f"out_{i}", n.meta.get("val")) for i, n in
                     enumerate(item.sub.outputs)],
            size_bytes=len(item.engine_bytes)))
    _cleanup(gm)
    drop_constant_values(gm)
    # (Constant computations copied into engines are gone now.)
    report.fallbacks = [fallbacks[n.name] for n in gm.graph.nodes if n.name in fallbacks]
    gm.kiln_report = report
    return gm


def _short(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[:3])


def _absorbed_constants(gm, members: set) -> set:
    """Constant computations whose every use is in an engine, directly or through other such
    constants: the engines bake their values in, so they do not fall back."""
    absorbed: set = set()
    for node in reversed(gm.graph.nodes):  # users before producers
        if (node.op == "call_function" and node.users and is_constant_expr(node)
                and all(user in members or user in absorbed for user in node.users)):
            absorbed.add(node)
    return absorbed


def _raise_if_fallbacks(gm, oracle, partitions) -> None:
    members = {n for nodes in partitions for n in nodes}
    absorbed = _absorbed_constants(gm, members)
    fallbacks = []
    for node in gm.graph.nodes:
        if (node.op != "call_function" or node in members or node in absorbed
                or is_sym_node(node) or node.target is operator.getitem):
            continue
        decision = oracle.decide(node)
        fallbacks.append(FallbackInfo(node.name, op_name(node), decision.reason or (
            "in a run of supported nodes smaller than min_block_size")))
    if fallbacks:
        raise FullCompilationError(fallbacks)


def _build_partition(gm, nodes, ranges, precision, target, device_index):
    """A :class:`_Built`, or the exception that stopped it."""
    sub = extract_subgraph(gm, nodes)
    first = _first_batch_input(sub.inputs, ranges)
    if first is not None and sub.inputs[0] is not first:
        sub = extract_subgraph(gm, nodes, first_input=first)
    if not sub.inputs:
        return UnsupportedError("the partition has no tensor inputs (a constant computation)")
    try:
        lowered = to_onnx(sub, ranges)
    except UnsupportedShapeError as error:
        return UnsupportedError(str(error))
    except Exception as error:  # the ONNX exporter's own failures
        return UnsupportedError(f"ONNX export failed: {type(error).__name__}: {error}")
    try:
        engine_bytes = build_engine(lowered, precision=precision, target=target,
                                    device=device_index)
    except (UnsupportedError, InvalidArgumentError) as error:
        return error  # about the partition's contents: diagnose and fall back
    _log.info("built a %s engine of %d nodes (%d bytes)", target, len(nodes), len(engine_bytes))
    return _Built(nodes, sub, engine_bytes, lowered.input_names, lowered.output_names)


def _replace_partition(gm: torch.fx.GraphModule, item: _Built, attr: str, engine,
                       replaced: dict) -> None:
    """``replaced`` maps the output nodes of partitions already replaced to the getitem nodes
    that stand for them now (a later partition may read them)."""
    graph = gm.graph
    members = set(item.nodes)
    by_input_name = {name: replaced.get(node, node)
                     for name, node in zip(item.input_names, item.sub.inputs)}
    by_output_name = dict(zip(item.output_names, item.sub.outputs))
    engine_inputs = [by_input_name[name] for name in engine.input_names()]
    engine_outputs = [by_output_name[name] for name in engine.output_names()]
    last = item.nodes[-1]
    with graph.inserting_after(last), warnings.catch_warnings():
        # fx warns that a get_attr target is no parameter/buffer/module: it is a ScriptObject.
        warnings.simplefilter("ignore", UserWarning)
        engine_node = graph.get_attr(attr)
    with graph.inserting_after(engine_node):
        call = graph.call_function(torch.ops.kiln.execute_engine.default,
                                   (list(engine_inputs), engine_node))
    call.meta["val"] = [n.meta.get("val") for n in engine_outputs]
    anchor = call
    for i, original in enumerate(engine_outputs):
        with graph.inserting_after(anchor):
            result = graph.call_function(operator.getitem, (call, i))
        result.meta = dict(original.meta)
        original.replace_all_uses_with(result,
                                       delete_user_cb=lambda user: user not in members)
        replaced[original] = result
        anchor = result
    for node in reversed(item.nodes):
        graph.erase_node(node)


def _drop_metadata_assertions(gm: torch.fx.GraphModule) -> None:
    """Erases ``aten._assert_tensor_metadata`` nodes (what ``Tensor.to`` leaves in an exported
    graph). They check a dtype, device and layout the traced graph already fixes, produce nothing
    and, left in place, would keep the constant computations they read (BERT's mask arithmetic)
    in PyTorch beside the engines."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten._assert_tensor_metadata.default:
            gm.graph.erase_node(node)


def _cleanup(gm: torch.fx.GraphModule) -> None:
    from torch.fx.passes.tools_common import legalize_graph

    graph = gm.graph
    changed = True
    while changed:  # symbolic sizes and parameters only the engines read are now unused
        changed = False
        for node in reversed(list(graph.nodes)):
            if not node.users and (is_sym_node(node) or node.op == "get_attr"
                                   or (node.op == "call_function" and not node.is_impure())):
                graph.erase_node(node)
                changed = True
    legalize_graph(gm)  # (sets gm.graph to a new, topologically sorted graph)
    _drop_unused_attributes(gm)
    gm.graph.lint()
    gm.recompile()


def _drop_unused_attributes(gm: torch.fx.GraphModule) -> None:
    """Parameters now baked into engines need not be kept (nor saved) twice."""
    used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name in used:
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        if leaf in owner._parameters:
            del owner._parameters[leaf]
        elif leaf in owner._buffers:
            del owner._buffers[leaf]


def _as_tuple(inputs) -> tuple:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs)


def _shape_specs_for_signature(module: torch.nn.Module, specs: tuple) -> tuple:
    """``specs`` (one per positional input) shaped as torch.export wants them for
    ``module.forward``'s signature: the inputs a ``*args`` parameter collects are one tuple."""
    import inspect

    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # no introspectable signature: leave it to torch.export
        return specs
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return specs
    named = sum(1 for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                    inspect.Parameter.POSITIONAL_OR_KEYWORD))
    return specs[:named] + (specs[named:],)


def export_module(module: torch.nn.Module, inputs: tuple,
                  dynamic_batch: tuple[int, int, int] | None = None,
                  dynamic_dims: DimSpecs | None = None) -> torch.fx.GraphModule:
    """torch.export + core-aten decompositions, unlifted (parameters as get_attr).
    ``dynamic_dims``: as from :func:`kiln._dynamic_shapes.normalize`; ``dynamic_batch`` alone:
    dim 0 of every tensor input. A constraint violation about those dims (torch fixing one to a
    size) raises :class:`DynamicShapeError` naming them."""
    names = parameter_names(module)
    if dynamic_dims is None and dynamic_batch is not None:
        dynamic_dims = normalize(None, dynamic_batch, inputs, names)
    dynamic_shapes = None
    if dynamic_dims:
        dynamic_shapes = _shape_specs_for_signature(module,
                                                    torch_dims(dynamic_dims, len(inputs)))
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ._output_containers import register_output_containers

    register_output_containers()  # transformers' caches in the outputs (see that module)
    # The math form of scaled_dot_product_attention decomposes into matmuls and a softmax that
    # kiln builds; CUDA's fused kernels (_scaled_dot_product_efficient_attention, ...) have no
    # ONNX form.
    assumptions: list[ExampleAssumption] = []
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), batched_nms_as_one_op():
        try:
            program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
        except Exception as error:
            if not is_data_dependent_guard(error):
                explained = (explain_export_error(error, dynamic_dims, names) if dynamic_dims
                             else None)
                if explained is None:
                    raise
                raise explained from error
            program, assumptions = export_with_example_decisions(module, inputs, dynamic_shapes,
                                                                 error)
        program = _run_decompositions(program)
    gm = program.module()
    gm.kiln_example_assumptions = assumptions
    return gm


def _run_decompositions(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program.run_decompositions()`` with kiln's additions to the table (:mod:`kiln._decompositions`),
    with the outputs seen as a flat tuple while it retraces.

    The retrace rebuilds the output containers, and a container whose unflatten runs tensor ops
    (transformers' DynamicCache concatenates each layer's keys onto an empty tensor it creates)
    leaves new inline constants in the graph that the exported program's verifier rejects
    ("Constant tensor lifted_tensor_0 is not in the constants dictionary"). The decomposed
    program gets the model's own output structure back, so its module still returns what the
    model returns."""
    import torch.utils._pytree as pytree

    from ._decompositions import kiln_decompositions

    table = kiln_decompositions()
    signature = program.module_call_graph[0].signature
    out_spec = signature.out_spec if signature is not None else None
    if out_spec is None or out_spec.is_leaf():
        return program.run_decompositions(table)
    signature.out_spec = pytree.tree_structure(tuple(range(out_spec.num_leaves)))
    try:
        decomposed = program.run_decompositions(table)
    finally:
        signature.out_spec = out_spec
    decomposed.module_call_graph[0].signature.out_spec = out_spec
    return decomposed


def compile(module: torch.nn.Module, inputs: "torch.Tensor | Sequence[torch.Tensor]", *,
            precision: str = "fp32", device: "torch.device | str | None" = None,
            dynamic_batch: "tuple[int, int, int] | None" = None,
            dynamic_shapes: Any = None,
            require_full_compilation: bool = False, min_block_size: int = 1,
            probe_unknown_ops: bool = True, report: bool = False) -> torch.fx.GraphModule:
    """Compiles ``module`` for the example ``inputs`` (a tensor or a sequence of tensors).

    - ``precision``: the engines' compute precision; "fp16"/"bf16"/"tf32" need CUDA engines. The
      engines keep the module's dtypes at their inputs and outputs, so the result is a drop-in
      replacement.
    - ``device``: "cpu" or "cuda[:N]"; default: the inputs' device. Module and inputs are moved
      there.
    - ``dynamic_shapes``: dynamic dims, per input, per dim: a sequence with one entry per input
      (or a dict keyed by input index or ``forward`` parameter name), each None (static) or
      ``{dim: (min, opt, max)}``. A tuple is a size of its own; a :class:`kiln.DynamicDim`
      (``DynamicDim("seq", 1, 16, 128)``) used in several places is one size (input_ids' and
      attention_mask's sequence length). Trace with sizes of at least 2 inside the ranges.
      Default: static shapes. :class:`kiln.DynamicShapeError` names the input and dim of a bad
      range, a dim out of range, an example outside its range or a dim torch.export fixes.
    - ``dynamic_batch``: ``(min, opt, max)`` for dim 0 of every tensor input (one size named
      "batch"); a shorthand that combines with ``dynamic_shapes``.
    - ``require_full_compilation``: raise :class:`FullCompilationError` listing every node that
      would run in PyTorch.
    - ``min_block_size``: runs of fewer supported compute nodes stay in PyTorch.
    - ``probe_unknown_ops``: aten ops outside kiln's table are tried alone (exported to ONNX and
      built); without it they fall back.
    - ``report``: print the report (it is also logged at INFO on "kiln.compile" and kept as
      ``result.kiln_report``).

    The module is put in eval mode (kiln engines are for inference).
    """
    inputs = _as_tuple(inputs)
    if device is None:
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    names = parameter_names(module)
    dynamic_dims = normalize(dynamic_shapes, dynamic_batch, inputs, names)
    if dynamic_batch is not None:
        dynamic_batch = tuple(int(v) for v in dynamic_batch)
    module = module.eval().to(device)
    inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)
    gm = export_module(module, inputs, dynamic_dims=dynamic_dims)
    gm = compile_graph_module(gm, precision=precision, device=device,
                              dynamic_batch=dynamic_batch, dynamic_dims=dynamic_dims,
                              input_names=names,
                              require_full_compilation=require_full_compilation,
                              min_block_size=min_block_size,
                              probe_unknown_ops=probe_unknown_ops)
    gm.kiln_example_inputs = [
        (tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else x for x in inputs]
    gm.kiln_dynamic_batch = dynamic_batch
    gm.kiln_dynamic_dims = dynamic_dims
    gm.kiln_device = device
    _log.info("%s", gm.kiln_report)
    if report:
        print(gm.kiln_report)
    return gm
