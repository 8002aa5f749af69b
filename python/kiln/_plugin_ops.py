"""torch ops that become kiln plugin layers in ``kiln.compile`` (docs/plugins.md, "torch custom ops").

A node calling a ``torch.library`` custom op ``ns::name`` maps to the plugin registered under
namespace ``ns`` and name ``name`` (highest version) when one is loaded in this process
(:func:`kiln.load_plugin_library`). torchvision's ops map to the plugins of kiln's plugin library
(:data:`TORCHVISION_PLUGINS`). The op's tensor arguments, in schema order, are the plugin's inputs;
its other arguments are the plugin's fields, by their schema names (an argument that is None is
left out; bool is an int field). The partition holding the node is exported to ONNX with the node as
one node of domain = the plugin's namespace and op type = its name, which kiln's ONNX importer turns
into the plugin layer.

Without a registered plugin the node falls back to PyTorch (the report says which plugin would run
it). A plugin that matches by name but not by fields raises :class:`PluginFieldError`, naming the
op, the argument and the plugin.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx

from ._capi import InvalidArgumentError

__all__ = ["TORCHVISION_PLUGINS", "PluginCall", "PluginFieldError", "is_custom_op",
           "plugin_identity", "map_node", "translation_table", "fuse_batched_nms"]

# torch op -> (plugin namespace, plugin name) of kiln's plugin library (libkiln_plugins.so).
TORCHVISION_PLUGINS: dict[str, tuple[str, str]] = {
    "torchvision::nms": ("kiln", "TorchvisionNms"),
    "torchvision::roi_align": ("kiln", "TorchvisionRoiAlign"),
    "torchvision::deform_conv2d": ("kiln", "TorchvisionDeformConv2d"),
    # torchvision.ops.batched_nms is Python around torchvision::nms; fuse_batched_nms turns its
    # exported form into this op.
    "kiln_plugins::batched_nms": ("kiln", "BatchedNMS"),
}

# Namespaces of torch's own ops: never plugins.
_TORCH_NAMESPACES = {"aten", "prims", "quantized", "_quantized", "quantized_decomposed"}

# ONNX attribute types of the plugin field kinds (kiln_plugin_field_kind).
_FIELD_KINDS = ("int", "float", "string", "ints", "floats", "strings")


class PluginFieldError(InvalidArgumentError):
    """A torch op whose name matches a registered plugin but whose arguments do not fit its fields."""


@dataclass(frozen=True)
class PluginCall:
    """How one node runs as a plugin layer."""

    op: str  # "mylib::scaled_gelu"
    plugin: dict  # kiln.describe_plugin's answer
    inputs: tuple  # the node's tensor arguments (fx nodes), in schema order
    fields: tuple  # ((name, kind, value), ...) in schema order

    @property
    def label(self) -> str:
        p = self.plugin
        return f"{p['namespace']}::{p['name']} v{p['version']} ({p['library']})"


def _qualified_name(op: torch._ops.OpOverload) -> str:
    return op._schema.name  # "ns::name"


def is_custom_op(node: torch.fx.Node) -> bool:
    """A call of an op outside torch's own namespaces (a torch.library custom op, torchvision's)."""
    target = node.target
    return (node.op == "call_function" and isinstance(target, torch._ops.OpOverload)
            and target.namespace not in _TORCH_NAMESPACES)


def plugin_identity(op: torch._ops.OpOverload) -> tuple[str, str]:
    """(namespace, name) of the plugin that would run ``op``."""
    qualified = _qualified_name(op)
    if qualified in TORCHVISION_PLUGINS:
        return TORCHVISION_PLUGINS[qualified]
    namespace, _, name = qualified.partition("::")
    return namespace, name


def _bind(op: torch._ops.OpOverload, args, kwargs) -> list[tuple[Any, Any]]:
    """[(schema argument, value)] with defaults filled in."""
    bound = []
    for i, argument in enumerate(op._schema.arguments):
        if i < len(args) and not argument.kwarg_only:
            value = args[i]
        elif argument.name in kwargs:
            value = kwargs[argument.name]
        elif argument.has_default_value():
            value = argument.default_value
        else:
            raise PluginFieldError(f"torch op {_qualified_name(op)}: argument "
                                   f"'{argument.name}' has no value")
        bound.append((argument, value))
    return bound


def _type_text(argument) -> str:
    return str(argument.type)


def _is_tensor_argument(argument) -> bool:
    text = _type_text(argument)
    return text in ("Tensor", "Optional[Tensor]", "Tensor?") or "Tensor" in text


def _kind_of(argument) -> str | None:
    """The plugin field kind a schema argument's type gives, or None."""
    text = _type_text(argument).replace("Optional[", "").rstrip("]").rstrip("?")
    simple = {"float": "float", "int": "int", "SymInt": "int", "bool": "int", "str": "string"}
    if text in simple:
        return simple[text]
    lists = {"List[float": "floats", "List[int": "ints", "List[SymInt": "ints",
             "List[bool": "ints", "List[str": "strings", "float[": "floats", "int[": "ints",
             "SymInt[": "ints", "bool[": "ints", "str[": "strings"}
    for prefix, kind in lists.items():
        if text.startswith(prefix):
            return kind
    return None


def _convert(value, kind: str):
    """``value`` as the plugin field kind ``kind``, or raises ValueError."""
    if kind == "int":
        if isinstance(value, (bool, int)):
            return int(value)
    elif kind == "float":
        if isinstance(value, (bool, int, float)):
            return float(value)
    elif kind == "string":
        if isinstance(value, str):
            return value
    elif kind in ("ints", "floats", "strings") and isinstance(value, (list, tuple)):
        return [_convert(v, kind[:-1]) for v in value]
    raise InvalidArgumentError(f"{value!r} is not {kind}")


def map_node(node: torch.fx.Node) -> PluginCall | None:
    """The plugin call for a custom-op node, or None when no plugin of its name is registered.
    Raises :class:`PluginFieldError` when one is but the op's arguments do not fit its fields."""
    from . import describe_plugin

    op = node.target
    qualified = _qualified_name(op)
    namespace, name = plugin_identity(op)
    plugin = describe_plugin(namespace, name)
    if plugin is None:
        return None
    label = f"{plugin['namespace']}::{plugin['name']} v{plugin['version']} ({plugin['library']})"
    where = f"kiln.compile: node '{node.name}' calls torch op {qualified}, which maps to plugin {label}"
    specs = {f["name"]: f for f in plugin["fields"]}
    accepted = ", ".join(f"{f['name']} ({f['kind']}{', required' if f['required'] else ''})"
                         for f in plugin["fields"]) or "none"
    returns = op._schema.returns
    if len(returns) != 1 or _type_text(returns[0]) != "Tensor":
        raise PluginFieldError(f"{where}, but the op returns {[str(r.type) for r in returns]}; "
                               "a torch op maps to a plugin when it returns one Tensor")
    inputs = []
    fields = []
    for argument, value in _bind(op, node.args, node.kwargs):
        if _is_tensor_argument(argument):
            if not isinstance(value, torch.fx.Node):
                raise PluginFieldError(
                    f"{where}, but its tensor argument '{argument.name}' is {value!r}: a plugin "
                    "takes every tensor argument as an input (None is not one)")
            inputs.append(value)
            continue
        if value is None:
            continue
        if isinstance(value, torch.fx.Node) or isinstance(value, (list, tuple)) and any(
                isinstance(v, torch.fx.Node) for v in value):
            raise PluginFieldError(
                f"{where}, but its argument '{argument.name}' is computed in the graph (a "
                "symbolic size?); plugin fields are constants")
        spec = specs.get(argument.name)
        if spec is None:
            raise PluginFieldError(
                f"{where}, but its argument '{argument.name}' ({_type_text(argument)}) is not a "
                f"field of the plugin, which takes: {accepted}")
        try:
            converted = _convert(value, spec["kind"])
        except ValueError:
            raise PluginFieldError(
                f"{where}, but its argument '{argument.name}' ({_type_text(argument)}, "
                f"{value!r}) does not fit the plugin's field of kind {spec['kind']}") from None
        fields.append((argument.name, spec["kind"], converted))
    given = {f[0] for f in fields}
    for spec in plugin["fields"]:
        if spec["required"] and spec["name"] not in given:
            raise PluginFieldError(
                f"{where}, but the plugin needs field '{spec['name']}' ({spec['kind']}) and the "
                "op has no argument of that name with a value")
    return PluginCall(qualified, plugin, tuple(inputs), tuple(fields))


def _onnx_op(plugin: dict, field_kinds: dict[str, str]):
    """An onnxscript op of domain = the plugin's namespace and type = its name, with the fields
    as attributes, for the exporter's custom translation table."""
    import onnxscript
    from onnx.defs import OpSchema

    attr_types = {"int": OpSchema.AttrType.INT, "float": OpSchema.AttrType.FLOAT,
                  "string": OpSchema.AttrType.STRING, "ints": OpSchema.AttrType.INTS,
                  "floats": OpSchema.AttrType.FLOATS, "strings": OpSchema.AttrType.STRINGS}
    tensor_types = [f"tensor({t})" for t in ("float", "float16", "bfloat16", "double", "int8",
                                              "int16", "int32", "int64", "uint8", "bool")]
    variadic = OpSchema.FormalParameterOption.Variadic
    schema = OpSchema(
        plugin["name"], plugin["namespace"], 1,
        inputs=[OpSchema.FormalParameter("inputs", "T", param_option=variadic,
                                         is_homogeneous=False)],
        outputs=[OpSchema.FormalParameter("outputs", "T", param_option=variadic,
                                          is_homogeneous=False)],
        type_constraints=[("T", tensor_types, "")],
        attributes=[OpSchema.Attribute(name, attr_types[kind], "")
                    for name, kind in field_kinds.items()])
    opset = onnxscript.values.Opset(plugin["namespace"], 1)
    return onnxscript.values.Op(opset, plugin["name"], op_schema=schema)


def translation_table(graph: torch.fx.Graph) -> dict:
    """The ONNX exporter's ``custom_translation_table`` for the plugin nodes of ``graph``: each
    custom op -> a function emitting its plugin node."""
    table = {}
    for node in graph.nodes:
        if node.op != "call_function" or not is_custom_op(node) or node.target in table:
            continue
        call = map_node(node)
        if call is None:
            continue
        op = node.target
        onnx_op = _onnx_op(call.plugin, {f["name"]: f["kind"] for f in call.plugin["fields"]})
        kinds = {f["name"]: f["kind"] for f in call.plugin["fields"]}

        def translate(*args, _op=op, _onnx_op=onnx_op, _kinds=kinds, **kwargs):
            inputs = []
            attributes = {}
            for argument, value in _bind(_op, args, kwargs):
                if _is_tensor_argument(argument):
                    inputs.append(value)
                elif value is not None:
                    attributes[argument.name] = _convert(value, _kinds[argument.name])
            return _onnx_op(*inputs, **attributes)

        table[op] = translate
    return table


# ---- torchvision.ops.batched_nms ------------------------------------------------------------------
#
# batched_nms is not an op: torch.export sees the Python around torchvision::nms. For the sizes
# export can trace (torchvision takes its per-class loop, which export cannot follow, only above
# 4000 box coordinates on the CPU or 20000 on CUDA) that is the coordinate trick:
#     nms(boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None], scores, iou_threshold)
# fuse_batched_nms finds that form and replaces it by one call of kiln_plugins::batched_nms, which
# kiln's plugin library runs as kiln::BatchedNMS (per-class suppression without the offsets, so
# float16 boxes cannot overflow there).

_BATCHED_NMS_LIBRARY = None


def _batched_nms_op():
    """kiln_plugins::batched_nms(boxes, scores, idxs, iou_threshold), defined on first use. Its
    PyTorch kernel (taken when the node falls back) is the coordinate trick in float32."""
    global _BATCHED_NMS_LIBRARY
    if _BATCHED_NMS_LIBRARY is None:
        lib = torch.library.Library("kiln_plugins", "FRAGMENT")
        lib.define("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor")

        def kernel(boxes, scores, idxs, iou_threshold):
            if boxes.numel() == 0:
                return torch.empty((0,), dtype=torch.int64, device=boxes.device)
            wide = boxes.float()
            offsets = idxs.to(wide) * (wide.max() + 1)
            return torch.ops.torchvision.nms(wide + offsets[:, None], scores.float(), iou_threshold)

        def fake(boxes, scores, idxs, iou_threshold):
            kept = torch.library.get_ctx().new_dynamic_size()
            return boxes.new_empty((kept,), dtype=torch.int64)

        lib.impl("batched_nms", kernel, "CompositeExplicitAutograd")
        torch.library.register_fake("kiln_plugins::batched_nms", fake, lib=lib)
        _BATCHED_NMS_LIBRARY = lib
    return torch.ops.kiln_plugins.batched_nms.default


@contextlib.contextmanager
def batched_nms_as_one_op():
    """While torch.export traces (kiln.compile), torchvision.ops.batched_nms is one call of
    kiln_plugins::batched_nms, whose fake kernel gives the kept count as a new dynamic size.
    torchvision's own batched_nms branches in Python on the box count (``boxes.numel() == 0``,
    ``> 4000``), which after a data-dependent filter (the detection heads' score threshold) is an
    unbacked size that export cannot branch on: torchvision's detection models did not export at
    all. The op then runs as kiln::BatchedNMS where that plugin is registered, and as the same
    coordinate trick in PyTorch where it falls back. The detection heads' MultiScaleRoIAlign
    (_multiscale_roi_align) sizes its result from the same count, so it is replaced as well
    (_multiscale_roi_align_by_masks). No-op when torchvision is not imported."""
    boxes_module = sys.modules.get("torchvision.ops.boxes")
    ops_module = sys.modules.get("torchvision.ops")
    if boxes_module is None:
        yield
        return
    op = _batched_nms_op()

    def batched_nms(boxes, scores, idxs, iou_threshold):
        return op(boxes, scores, idxs, float(iou_threshold))

    saved = [(module, "batched_nms", module.batched_nms) for module in (boxes_module, ops_module)
             if module is not None and hasattr(module, "batched_nms")]
    poolers = sys.modules.get("torchvision.ops.poolers")
    if poolers is not None and hasattr(poolers, "_multiscale_roi_align"):
        saved.append((poolers, "_multiscale_roi_align", poolers._multiscale_roi_align))
    for module, name, _ in saved:
        setattr(module, name, batched_nms if name == "batched_nms" else _multiscale_roi_align_by_masks)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _multiscale_roi_align_by_masks(x_filtered, boxes, output_size, sampling_ratio, scales, mapper):
    """torchvision's _multiscale_roi_align without data-dependent sizes: it gathers each level's
    rois (``rois[torch.where(levels == level)]``) and sizes its result by ``len(rois)``, which
    export cannot do once the box count is data-dependent. Here every level's RoiAlign runs on all
    rois and each roi takes its own level's result (torch.where, so no other level's values reach
    it): the same values, for a few more RoiAligns on the few hundred boxes a detection head
    keeps."""
    from torchvision.ops import roi_align
    from torchvision.ops.poolers import _convert_to_roi_format

    if scales is None or mapper is None:
        raise ValueError("scales and mapper should not be None")
    rois = _convert_to_roi_format(boxes)
    if len(x_filtered) == 1:
        return roi_align(x_filtered[0], rois, output_size=output_size, spatial_scale=scales[0],
                         sampling_ratio=sampling_ratio)
    levels = mapper(boxes)
    dtype = x_filtered[0].dtype
    result = None
    for level, (feature, scale) in enumerate(zip(x_filtered, scales)):
        pooled = roi_align(feature, rois, output_size=output_size, spatial_scale=scale,
                           sampling_ratio=sampling_ratio).to(dtype)
        result = pooled if result is None else torch.where((levels == level)[:, None, None, None], pooled, result)
    return result


def _call_of(node, *targets: str):
    """``node`` when it is a call of one of ``targets`` ("aten.max.default"), else None."""
    if isinstance(node, torch.fx.Node) and node.op == "call_function" and str(node.target) in targets:
        return node
    return None


def _through_column(node):
    """The tensor that ``node`` makes a column of (``x[:, None]``: an unsqueeze at 1, maybe after
    a full slice), or None."""
    unsqueeze = _call_of(node, "aten.unsqueeze.default")
    if unsqueeze is None or unsqueeze.args[1] not in (1, -1):
        view = _call_of(node, "aten.view.default", "aten.reshape.default")
        if view is None or len(view.args[1]) != 2 or view.args[1][1] != 1:
            return None
        return view.args[0]
    source = unsqueeze.args[0]
    full = _call_of(source, "aten.slice.Tensor")
    if full is not None and tuple(full.args[1:]) in ((0, 0, 9223372036854775807), (0, None, None)):
        return full.args[0]
    return source


def _coordinate_trick(nms: torch.fx.Node):
    """(boxes, idxs) when the first argument of the torchvision::nms call ``nms`` is
    ``boxes + (idxs.to(boxes) * (boxes.max() + c))[:, None]``, else None."""
    add = _call_of(nms.args[0], "aten.add.Tensor")
    if add is None:
        return None
    for boxes, shifted in (add.args[:2], add.args[1::-1]):
        mul = _call_of(_through_column(shifted), "aten.mul.Tensor")
        if mul is None or not isinstance(boxes, torch.fx.Node):
            continue
        for cast, scale in (mul.args[:2], mul.args[1::-1]):
            cast = _call_of(cast, "aten._to_copy.default", "aten.to.dtype")
            scale = _call_of(scale, "aten.add.Tensor")
            if cast is None or scale is None:
                continue
            if any(_call_of(a, "aten.max.default") is not None and a.args[0] is boxes
                   for a in scale.args[:2]):
                return boxes, cast.args[0]
    return None


def fuse_batched_nms(gm: torch.fx.GraphModule) -> int:
    """Replaces each exported torchvision.ops.batched_nms (the coordinate trick around
    torchvision::nms) in ``gm`` by kiln_plugins::batched_nms, when kiln::BatchedNMS is registered.
    Returns how many it replaced. The offset nodes go when nothing else reads them."""
    from . import describe_plugin

    nms_calls = [n for n in gm.graph.nodes if _call_of(n, "torchvision.nms.default") is not None]
    if not nms_calls or describe_plugin("kiln", "BatchedNMS") is None:
        return 0
    replaced = 0
    for nms in nms_calls:
        found = _coordinate_trick(nms)
        if found is None:
            continue
        boxes, idxs = found
        shifted_boxes = nms.args[0]
        with gm.graph.inserting_before(nms):
            fused = gm.graph.call_function(_batched_nms_op(), (boxes, nms.args[1], idxs, nms.args[2]))
        fused.meta.update(nms.meta)
        nms.replace_all_uses_with(fused)
        gm.graph.erase_node(nms)
        _erase_if_unused(gm, shifted_boxes)
        replaced += 1
    if replaced:
        gm.recompile()
    return replaced


def _erase_if_unused(gm: torch.fx.GraphModule, node) -> None:
    """Erases ``node`` and then its producers that nothing else reads (pure aten calls only)."""
    pending = [node]
    while pending:
        current = pending.pop()
        if (not isinstance(current, torch.fx.Node) or current.op != "call_function" or current.users
                or not str(current.target).startswith("aten.")):
            continue
        inputs = list(current.all_input_nodes)
        gm.graph.erase_node(current)
        pending.extend(inputs)
