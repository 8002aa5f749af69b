"""Deciding which aten nodes kiln can run, and cutting an FX graph into engine-sized pieces.

The graph is the core-aten graph of ``torch.export`` (after ``run_decompositions``), unlifted
(parameters are ``get_attr`` nodes). A node is *supported* when its op is in the table below (aten
ops known to convert, through torch's ONNX exporter, to ONNX ops kiln builds) and its tensors have
kiln dtypes, or, for an op outside the table, when a probe (the node exported alone to ONNX and
built by kiln for the CPU) succeeds. Probe results are cached per op signature for the process.

Symbolic-size nodes (``sym_size``, ``operator.mul`` on SymInts, ...) are never partition members:
an engine takes tensors only, so a partition that reads one gets a copy of the little computation
that produced it (see :func:`extract_subgraph`), and the tensors it reads become engine inputs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase

from ._plugin_ops import is_custom_op, map_node, plugin_identity

# dtypes a kiln tensor can have (include/kiln/types.hpp).
KILN_DTYPES = {
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16,
    torch.int32, torch.int64, torch.uint8, torch.bool,
}
# MatMul, Gemm, Conv, pooling, normalisation, Softmax: "nn float" in docs/ops.md.
NN_FLOAT = {torch.float32, torch.float16, torch.bfloat16}

_SYM_OPERATORS = {
    operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
    operator.mod, operator.neg, operator.pow,
}


def _tensor_vals(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _tensor_vals(item)]
    return []


def _arg_nodes(node: torch.fx.Node) -> list[torch.fx.Node]:
    return list(node.all_input_nodes)


def _only_first_output_used(node: torch.fx.Node) -> str | None:
    for user in node.users:
        if user.target is not operator.getitem or user.args[1] != 0:
            return "an output other than the first is used (kiln computes only the first)"
    return None


def _plain_to_copy(node: torch.fx.Node) -> str | None:
    val = node.meta.get("val")
    src = node.args[0].meta.get("val") if isinstance(node.args[0], torch.fx.Node) else None
    if isinstance(val, torch.Tensor) and isinstance(src, torch.Tensor):
        if val.device != src.device:
            return "device copy"
    if node.kwargs.get("layout") not in (None, torch.strided):
        return "layout change"
    return None


def _pool_no_divisor(node: torch.fx.Node) -> str | None:
    if len(node.args) > 6 and node.args[6] is not None:
        return "divisor_override is not supported"
    return None


def _adaptive_pool_global(node: torch.fx.Node) -> str | None:
    size = list(node.args[1])
    if any(s != 1 for s in size):
        return "adaptive pooling to a size other than 1 is not supported (only global pooling)"
    return None


# PyTorch's PT2E quantize ops (quantized_decomposed) -> the positions of their quant_min,
# quant_max and dtype arguments. Exported to ONNX they become QuantizeLinear, which clamps to the
# dtype's whole range, so a narrower range (int8 in [-127, 127]) would change results: such nodes
# stay in PyTorch. (The dequantize ops do not clamp; any range exports exactly.)
_QUANT_RANGE_ARGS = {
    "quantized_decomposed.quantize_per_tensor.default": (3, 4, 5),
    "quantized_decomposed.quantize_per_tensor.tensor": (3, 4, 5),
    "quantized_decomposed.quantize_per_channel.default": (4, 5, 6),
}


def _quant_range_reason(node: torch.fx.Node, name: str) -> str | None:
    """None when the node's quant_min/quant_max are its dtype's whole range, else why not."""
    positions = _QUANT_RANGE_ARGS.get(name)
    if positions is None:
        return None
    low_at, high_at, dtype_at = positions
    if len(node.args) <= dtype_at:
        return f"{name}: quant_min, quant_max and dtype must be given positionally"
    low, high, dtype = node.args[low_at], node.args[high_at], node.args[dtype_at]
    if not isinstance(dtype, torch.dtype) or dtype.is_floating_point:
        return f"{name}: quantized dtype {dtype} (kiln: integer codes here)"
    info = torch.iinfo(dtype)
    if (low, high) != (info.min, info.max):
        return (f"{name}: quant range [{low}, {high}] is narrower than {dtype}'s [{info.min}, "
                f"{info.max}] (ONNX QuantizeLinear clamps to the whole range)")
    return None


@dataclass(frozen=True)
class OpRule:
    """``nn_float``: float tensors must be float32/16/bf16. ``check`` returns a reason to fall
    back, or None."""

    nn_float: bool = False
    check: Callable[[torch.fx.Node], str | None] | None = None


_PLAIN = OpRule()
_NN = OpRule(nn_float=True)

# aten op -> rule. Conservative: each maps to ONNX ops listed in docs/ops.md through torch 2.13's
# exporter (torchlib); anything else is probed or falls back.
ATEN_SUPPORT: dict[str, OpRule] = {
    **{f"aten.{op}": _PLAIN for op in [
        "add.Tensor", "add.Scalar", "sub.Tensor", "sub.Scalar", "mul.Tensor", "mul.Scalar",
        "div.Tensor", "div.Scalar", "rsub.Scalar", "rsub.Tensor", "neg.default", "abs.default",
        "exp.default", "log.default", "sqrt.default", "rsqrt.default", "reciprocal.default",
        "sigmoid.default", "tanh.default", "relu.default", "gelu.default", "erf.default",
        "sin.default", "cos.default", "floor.default", "ceil.default", "round.default",
        "sign.default", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar",
        "clamp.default", "clamp.Tensor", "clamp_min.default", "clamp_max.default",
        "hardtanh.default", "leaky_relu.default", "elu.default", "hardsigmoid.default",
        "hardswish.default", "silu.default", "softplus.default", "mish.default",
        "maximum.default", "minimum.default", "where.self",
        "eq.Tensor", "eq.Scalar", "ne.Tensor", "ne.Scalar", "lt.Tensor", "lt.Scalar",
        "le.Tensor", "le.Scalar", "gt.Tensor", "gt.Scalar", "ge.Tensor", "ge.Scalar",
        "logical_not.default", "logical_and.default", "logical_or.default", "isnan.default",
        "view.default", "_unsafe_view.default", "reshape.default", "permute.default",
        "transpose.int", "t.default", "expand.default", "unsqueeze.default", "squeeze.dim",
        "squeeze.dims", "cat.default", "slice.Tensor", "select.int", "split.Tensor",
        "split_with_sizes.default", "index_select.default", "embedding.default",
        "constant_pad_nd.default", "clone.default", "alias.default", "detach.default",
        "repeat.default", "full.default", "full_like.default", "zeros_like.default",
        "ones_like.default", "scalar_tensor.default", "arange.start_step", "arange.default",
        "sum.dim_IntList", "amax.default", "amin.default", "mean.dim",
        "lift_fresh_copy.default", "dropout.default",
    ]},
    **{f"aten.{op}": _NN for op in [
        "mm.default", "bmm.default", "addmm.default", "_softmax.default",
        "_log_softmax.default", "_native_batch_norm_legit_no_training.default",
        "avg_pool1d.default", "max_pool1d.default",
        "convolution.default",  # Conv, or ConvTranspose when transposed
    ]},
    "aten._to_copy.default": OpRule(check=_plain_to_copy),
    "aten.native_layer_norm.default": OpRule(nn_float=True, check=_only_first_output_used),
    "aten.native_group_norm.default": OpRule(nn_float=True, check=_only_first_output_used),
    "aten.max_pool2d_with_indices.default": OpRule(nn_float=True,
                                                   check=_only_first_output_used),
    "aten.max_pool3d_with_indices.default": OpRule(nn_float=True,
                                                   check=_only_first_output_used),
    "aten.avg_pool2d.default": OpRule(nn_float=True, check=_pool_no_divisor),
    "aten.avg_pool3d.default": OpRule(nn_float=True, check=_pool_no_divisor),
    "aten._adaptive_avg_pool2d.default": OpRule(nn_float=True, check=_adaptive_pool_global),
}


def op_name(node: torch.fx.Node) -> str:
    """``aten.add.Tensor`` for OpOverloads, the qualified name otherwise."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)


def is_sym_node(node: torch.fx.Node) -> bool:
    """A node computing a symbolic size (a SymInt/SymFloat/SymBool), not a tensor."""
    if node.op != "call_function":
        return False
    val = node.meta.get("val")
    if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool)):
        return (node.target in _SYM_OPERATORS
                or op_name(node) in ("aten.sym_size.int", "aten.sym_numel.default",
                                     "aten.sym_stride.int"))
    return False


@dataclass
class Decision:
    supported: bool
    reason: str = ""


class SupportOracle:
    """Answers "can kiln run this node?" with the table, dtype checks and (optionally) probes."""

    def __init__(self, probe: Callable[[torch.fx.Node], str | None] | None = None):
        self._probe = probe
        self.decisions: dict[torch.fx.Node, Decision] = {}

    def decide(self, node: torch.fx.Node) -> Decision:
        cached = self.decisions.get(node)
        if cached is None:
            cached = self._decide(node)
            self.decisions[node] = cached
        return cached

    def _decide(self, node: torch.fx.Node) -> Decision:
        if node.op != "call_function":
            return Decision(False, f"{node.op} node")
        if node.target is operator.getitem:
            producer = node.args[0]
            if isinstance(producer, torch.fx.Node) and producer.op == "call_function":
                decision = self.decide(producer)
                if not decision.supported:
                    return Decision(False, "reads a fallback node's output")
                return Decision(True)
            return Decision(False, "getitem of a non-node")
        if is_sym_node(node):
            return Decision(False, "symbolic size computation (copied into engines that use it)")
        if is_constant_expr(node):
            # Not an engine of its own (it would have no inputs): each engine reading it takes its
            # value as a constant.
            return Decision(False, "a constant computation (baked into the engines that read it)")
        name = op_name(node)
        val = node.meta.get("val")
        outputs = _tensor_vals(val)
        if not outputs:
            return Decision(False, f"{name} produces no tensor")
        inputs = [t for arg in _arg_nodes(node) for t in _tensor_vals(arg.meta.get("val"))]
        for tensor in inputs + outputs:
            if tensor.dtype not in KILN_DTYPES:
                return Decision(False, f"dtype {tensor.dtype} is not a kiln dtype")
        if is_custom_op(node):
            return self._decide_custom_op(node, name)
        if (reason := _quant_range_reason(node, name)) is not None:
            return Decision(False, reason)
        rule = ATEN_SUPPORT.get(name)
        if rule is None:
            if self._probe is None:
                return Decision(False, f"{name} is not in kiln's table of supported aten ops")
            reason = self._probe(node)
            return Decision(reason is None, reason or "")
        if rule.nn_float:
            for tensor in inputs + outputs:
                if tensor.is_floating_point() and tensor.dtype not in NN_FLOAT:
                    return Decision(False, f"{name} on {tensor.dtype} (kiln: float32/16/bf16)")
        if rule.check is not None:
            reason = rule.check(node)
            if reason:
                return Decision(False, f"{name}: {reason}")
        return Decision(True)


    @staticmethod
    def _decide_custom_op(node: torch.fx.Node, name: str) -> Decision:
        """A custom op runs as a plugin layer when a plugin of its name is registered
        (:mod:`kiln._plugin_ops`; raises when one is but its fields do not fit), else falls back:
        kiln's own ops cannot compute it."""
        if map_node(node) is not None:
            return Decision(True)
        namespace, plugin = plugin_identity(node.target)
        return Decision(False, f"{name} is a custom op and no plugin registers {namespace}::"
                               f"{plugin} (load one with kiln.load_plugin_library; "
                               "docs/plugins.md)")


class _OracleSupport(OperatorSupportBase):
    def __init__(self, oracle: SupportOracle):
        self.oracle = oracle

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        return self.oracle.decide(node).supported


# Nodes that only move or reinterpret data: a partition made of nothing else is not worth an
# engine.
_NON_COMPUTE = {
    "aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
    "aten.permute.default", "aten.transpose.int", "aten.t.default", "aten.expand.default",
    "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.clone.default",
    "aten.alias.default", "aten.detach.default", "aten.slice.Tensor", "aten.select.int",
    "aten.lift_fresh_copy.default", "getitem",
}


def compute_node_count(nodes) -> int:
    return sum(1 for n in nodes if op_name(n) not in _NON_COMPUTE)


def propose_partitions(gm: torch.fx.GraphModule, oracle: SupportOracle,
                       min_block_size: int = 1) -> list[list[torch.fx.Node]]:
    """Supported nodes grouped into acyclic partitions, each a list in graph order."""
    partitioner = CapabilityBasedPartitioner(gm, _OracleSupport(oracle),
                                             allows_single_node_partition=True)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    result = []
    for partition in partitioner.propose_partitions():
        nodes = sorted(partition.nodes, key=order.__getitem__)
        if compute_node_count(nodes) >= max(min_block_size, 1):
            result.append(nodes)
    result.sort(key=lambda nodes: order[nodes[0]])
    return result


@dataclass
class Subgraph:
    """A partition as a standalone GraphModule.

    ``inputs``: the outer-graph tensor nodes fed to it, in placeholder order. ``outputs``: the
    partition's nodes whose values are used outside it, in the module's output order. Parameters
    and buffers it reads are attributes of ``module`` (they become engine constants)."""

    module: torch.fx.GraphModule
    inputs: list[torch.fx.Node]
    outputs: list[torch.fx.Node]
    nodes: list[torch.fx.Node] = field(default_factory=list)


def is_constant_expr(node: torch.fx.Node) -> bool:
    """A call_function computed from parameters/buffers and literals only (e.g. a transposed
    weight): engines reading it get a copy, so the result is baked into the engine."""
    cached = node.meta.get("_kiln_constant_expr")
    if cached is None:
        cached = (node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
                  and torch.Tag.nondeterministic_seeded not in node.target.tags
                  and isinstance(node.meta.get("val"), torch.Tensor)
                  and all(arg.op == "get_attr" or is_constant_expr(arg)
                          for arg in _arg_nodes(node)))
        node.meta["_kiln_constant_expr"] = cached
    return cached


# A constant computation is baked into the engine as its value (an initializer) when that value
# is small or no larger than the parameters it is computed from; larger results (expansions of
# small tensors) stay as ops for the builder to fold or compute.
_FOLD_ALWAYS_NUMEL = 1 << 16


def constant_value(gm: torch.fx.GraphModule, node: torch.fx.Node) -> torch.Tensor:
    """The value of a constant computation (``is_constant_expr``), computed once in PyTorch and
    cached in the node's meta until ``drop_constant_values``."""
    cached = node.meta.get("_kiln_constant_value")
    if cached is not None:
        return cached

    def resolve(arg):
        if isinstance(arg, torch.fx.Node):
            if arg.op == "get_attr":
                value = _outer_attr(gm, arg.target)
                return value.detach() if isinstance(value, torch.Tensor) else value
            return constant_value(gm, arg)
        return arg

    args = torch.fx.node.map_aggregate(node.args, resolve)
    kwargs = torch.fx.node.map_aggregate(node.kwargs, resolve)
    with torch.no_grad():
        value = node.target(*args, **kwargs)
    node.meta["_kiln_constant_value"] = value
    return value


def drop_constant_values(gm: torch.fx.GraphModule) -> None:
    for node in gm.graph.nodes:
        node.meta.pop("_kiln_constant_value", None)


def _parameter_numel(gm: torch.fx.GraphModule, node: torch.fx.Node, seen: set) -> int:
    total = 0
    for arg in _arg_nodes(node):
        if arg in seen:
            continue
        seen.add(arg)
        if arg.op == "get_attr":
            value = _outer_attr(gm, arg.target)
            total += value.numel() if isinstance(value, torch.Tensor) else 0
        else:
            total += _parameter_numel(gm, arg, seen)
    return total


def _worth_folding(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor) or any(not isinstance(d, int) for d in val.shape):
        return False
    numel = val.numel()
    return numel <= _FOLD_ALWAYS_NUMEL or numel <= _parameter_numel(gm, node, set())


def _outer_attr(gm: torch.fx.GraphModule, target: str):
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def extract_subgraph(gm: torch.fx.GraphModule, nodes: list[torch.fx.Node],
                     first_input: torch.fx.Node | None = None) -> Subgraph:
    """Copies ``nodes`` into a new graph. Outer tensors become placeholders (``first_input``, when
    it is one of them, first), outer ``get_attr`` tensors become the new module's buffers, and
    symbolic-size nodes the partition reads are copied in with their own inputs."""
    members = set(nodes)
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    consts: dict[str, torch.Tensor] = {}

    # Outer tensors first, so the placeholders come before everything (in a stable order).
    outer_inputs: list[torch.fx.Node] = []
    seen: set[torch.fx.Node] = set()

    size_reads: list[torch.fx.Node] = []  # sym_size(t, d) nodes the partition needs

    def collect(node: torch.fx.Node) -> None:
        for arg in _arg_nodes(node):
            if arg in members or arg in seen:
                continue
            seen.add(arg)
            if op_name(arg) == "aten.sym_size.int":
                size_reads.append(arg)
            elif is_sym_node(arg) or is_constant_expr(arg):
                collect(arg)
            elif arg.op != "get_attr":
                outer_inputs.append(arg)

    for node in nodes:
        collect(node)
    # A size the partition reads usually equals a dim of a tensor it already takes (the batch):
    # read it there rather than taking one more input only for its shape.
    size_sources: dict[torch.fx.Node, tuple[torch.fx.Node, int]] = {}
    for size in size_reads:
        expr = size.meta["val"].node.expr if isinstance(size.meta.get("val"), torch.SymInt) \
            else None
        source = None
        for candidate in outer_inputs:
            val = candidate.meta.get("val")
            if expr is None or not isinstance(val, torch.Tensor):
                continue
            for d, dim in enumerate(val.shape):
                if isinstance(dim, torch.SymInt) and dim.node.expr == expr:
                    source = (candidate, d)
                    break
            if source:
                break
        if source is None:
            tensor = size.args[0]
            if tensor not in outer_inputs:
                outer_inputs.append(tensor)
            source = (tensor, size.args[1])
        size_sources[size] = source
    if first_input is not None and first_input in outer_inputs:
        outer_inputs.remove(first_input)
        outer_inputs.insert(0, first_input)
    for i, node in enumerate(outer_inputs):
        placeholder = graph.placeholder(f"in_{i}")
        placeholder.meta = dict(node.meta)
        env[node] = placeholder

    def materialize(node: torch.fx.Node) -> torch.fx.Node:
        if node in env:
            return env[node]
        if node.op == "get_attr":
            name = f"c_{len(consts)}"
            consts[name] = _outer_attr(gm, node.target)
            copy = graph.get_attr(name)
            copy.meta = dict(node.meta)
        elif node in size_sources:
            tensor, dim = size_sources[node]
            copy = graph.call_function(node.target, (env[tensor], dim))
            copy.meta = dict(node.meta)
        elif is_constant_expr(node) and _worth_folding(gm, node):
            # Computed here rather than exported as ops: the exporter's own folding of such
            # chains (Swin's shifted-window masks) has produced invalid graphs.
            name = f"c_{len(consts)}"
            consts[name] = constant_value(gm, node).contiguous()
            copy = graph.get_attr(name)
            copy.meta = dict(node.meta)
        elif is_sym_node(node) or is_constant_expr(node):
            copy = graph.node_copy(node, materialize)
        else:
            raise AssertionError(f"node {node.name} is neither an input nor a member")
        env[node] = copy
        return copy

    for node in nodes:
        for arg in _arg_nodes(node):
            if arg not in env and arg not in members:
                materialize(arg)
        env[node] = graph.node_copy(node, lambda n: env[n])

    outputs = [n for n in nodes
               if any(user not in members for user in n.users)
               and isinstance(n.meta.get("val"), torch.Tensor)]
    graph.output(tuple(env[n] for n in outputs))

    root = torch.nn.Module()
    for name, value in consts.items():
        if isinstance(value, torch.nn.Parameter):
            value = value.detach()
        if isinstance(value, torch.Tensor):
            root.register_buffer(name, value)
        else:
            setattr(root, name, value)
    module = torch.fx.GraphModule(root, graph)
    return Subgraph(module=module, inputs=outer_inputs, outputs=outputs, nodes=list(nodes))
