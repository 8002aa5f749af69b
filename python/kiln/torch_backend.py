"""``torch.compile(model, backend="kiln")``: a TorchDynamo backend that runs what it can in kiln
engines.

Dynamo hands :func:`kiln_backend` each captured FX graph (torch-level ops) with example inputs;
the module's parameters and buffers among them are frozen into the graph (engines hold weights as
constants: update weights, then recompile). The graph is exported to core aten (``torch.export``),
partitioned and compiled exactly as :func:`kiln.compile` does; unsupported nodes stay in PyTorch.
Graphs with symbolic sizes (Dynamo's automatic dynamic shapes, ``dynamic=True``) are compiled per
input-shape signature on first use. A graph that cannot be exported at all runs as captured (in
PyTorch), with a warning.

Options (``torch.compile(..., options={...})``): ``precision``, ``min_block_size``,
``require_full_compilation``, ``probe_unknown_ops``, ``dynamic_batch`` (min, opt, max).

The backend is registered with Dynamo under the name "kiln" when this module is imported (and by
``import kiln`` when ``torch._dynamo`` is already loaded); installed packages also declare the
entry point ``torch_dynamo_backends: kiln = kiln.torch_backend:kiln_backend``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Sequence

import torch

from ._capi import InvalidArgumentError

__all__ = ["kiln_backend", "register"]

_log = logging.getLogger("kiln.compile")


def _as_real(value: Any) -> Any:
    """Dynamo may pass FakeTensors; torch.export needs real example tensors."""
    if isinstance(value, torch.Tensor):
        from torch._subclasses.fake_tensor import FakeTensor

        if isinstance(value, FakeTensor) or value.device.type == "meta":
            shape = [int(d) for d in value.shape]
            device = value.device if value.device.type != "meta" else torch.device("cpu")
            if value.dtype.is_floating_point:
                return torch.randn(shape, dtype=value.dtype, device=device)
            return torch.zeros(shape, dtype=value.dtype, device=device)
    return value


def _is_module_state(node: torch.fx.Node, value: Any) -> bool:
    """A graph input that is a parameter or buffer of the compiled module (Dynamo passes them as
    inputs): engines take it as a constant."""
    if isinstance(value, torch.nn.Parameter):
        return True
    source = getattr(node.meta.get("grapharg"), "source", None)
    name = getattr(source, "name", "")
    name = name() if callable(name) else str(name)
    return "._buffers[" in name or "._parameters[" in name


def _freeze_module_state(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]):
    """A copy of ``gm`` whose parameter/buffer inputs are attributes; and the indices of the
    inputs it still takes."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    graph = torch.fx.Graph()
    env: dict = {}
    live = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            index = placeholders.index(node)
            value = example_inputs[index] if index < len(example_inputs) else None
            if isinstance(value, torch.Tensor) and _is_module_state(node, value):
                name = f"_kiln_frozen_{index}"
                gm.register_buffer(name, value.detach())
                env[node] = graph.get_attr(name)
                env[node].meta = dict(node.meta)
                continue
            live.append(index)
        env[node] = graph.node_copy(node, lambda n: env[n])
    return torch.fx.GraphModule(gm, graph), live


class _KilnGraph:
    """What :func:`kiln_backend` returns: the graph with its supported parts in engines.

    Static graphs are compiled at once. Graphs Dynamo made shape-generic (symbolic sizes) are
    compiled per input-shape signature on first use, since engines are built for known shapes
    (or a dynamic batch: pass ``options={"dynamic_batch": (min, opt, max)}``)."""

    def __init__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any],
                 options: dict):
        self.module, self.live = _freeze_module_state(gm, example_inputs)
        self.options = dict(options)
        self.cache: dict[tuple, Callable] = {}
        self.report = None
        inputs = [example_inputs[i] for i in self.live]
        self.static = all(isinstance(x, torch.Tensor) and
                          all(isinstance(d, int) for d in x.shape) for x in inputs)
        if self.static:
            self._compile(tuple(_as_real(x) for x in inputs))

    @staticmethod
    def _key(inputs) -> tuple:
        return tuple((tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else
                     (type(x).__name__, x) for x in inputs)

    def _compile(self, inputs: tuple) -> Callable:
        from ._compile import FullCompilationError, compile_graph_module, export_module

        options = dict(self.options)
        tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
        device = options.pop("device", None) or (tensors[0].device if tensors else "cpu")
        dynamic_batch = options.pop("dynamic_batch", None)
        try:
            if torch.device(device).type not in ("cpu", "cuda"):
                raise InvalidArgumentError(f"kiln engines do not run on {device}")
            exported = export_module(self.module, inputs, dynamic_batch)
            compiled = compile_graph_module(exported, device=device,
                                            dynamic_batch=dynamic_batch, **options)
        except FullCompilationError:
            raise
        except Exception as error:  # a graph kiln cannot take at all still runs, in PyTorch
            warnings.warn(f"kiln backend: graph left to PyTorch: {type(error).__name__}: "
                          f"{error}")
            compiled = self.module
        else:
            self.report = compiled.kiln_report
            kiln_backend.last_report = compiled.kiln_report
            _log.info("%s", compiled.kiln_report)
        self.cache[self._key(inputs)] = compiled
        return compiled

    def __call__(self, *args):
        inputs = tuple(args[i] for i in self.live)
        compiled = self.cache.get(self._key(inputs))
        if compiled is None:
            compiled = self._compile(inputs)
        return compiled(*inputs)


_OPTIONS = ("precision", "device", "dynamic_batch", "require_full_compilation",
            "min_block_size", "probe_unknown_ops")


def kiln_backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], *,
                 options: dict | None = None, mode: str | None = None,
                 **kwargs: Any) -> Callable:
    """The Dynamo backend: returns a callable taking the graph's inputs. ``options`` (from
    ``torch.compile(..., options={...})``, or keyword arguments when called directly) are
    :func:`kiln.compile`'s keyword arguments: precision, device, dynamic_batch,
    require_full_compilation, min_block_size, probe_unknown_ops. ``mode`` is ignored."""
    merged = {**(options or {}), **kwargs}
    unknown = sorted(set(merged) - set(_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"kiln backend: unknown option(s) {unknown}; known: {list(_OPTIONS)}")
    return _KilnGraph(gm, example_inputs, merged)


kiln_backend.last_report = None  # the report of the most recent graph compiled


def register() -> None:
    """Registers :func:`kiln_backend` as Dynamo backend "kiln" (idempotent)."""
    from torch._dynamo.backends import registry

    if registry._COMPILER_FNS.get("kiln") is kiln_backend:
        return
    if registry._BACKENDS.get("kiln") is not None and "kiln" not in registry._COMPILER_FNS:
        # Dynamo found the package's entry point and is loading this module through it; it
        # registers the backend itself once the import returns (and rejects a second name).
        return
    registry._COMPILER_FNS.pop("kiln", None)
    registry.register_backend(compiler_fn=kiln_backend, name="kiln")


register()
