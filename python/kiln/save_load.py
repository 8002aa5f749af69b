"""``kiln.save`` / ``kiln.load``: compiled modules as ExportedProgram or TorchScript files.

Both formats hold the engines (``torch.classes.kiln.Engine`` objects pickle their engine
bytes), so a saved file runs in a process that has only torch and the runtime libraries
(``libkiln_torch.so`` + ``libkiln_runtime.so``): :func:`load` imports nothing but
:mod:`kiln.runtime`.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Any, Sequence

import torch

from ._capi import InvalidArgumentError, UnsupportedError

__all__ = ["save", "load", "FORMATS"]

FORMATS = ("exported_program", "torchscript")


def _example_inputs(module: torch.nn.Module, inputs) -> tuple:
    if inputs is not None:
        return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    spec = getattr(module, "kiln_example_inputs", None)
    if spec is None:
        raise InvalidArgumentError("kiln.save: pass inputs= (the module was not made by kiln.compile)")
    device = getattr(module, "kiln_device", torch.device("cpu"))
    made = []
    for item in spec:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.dtype):
            shape, dtype = item
            made.append(torch.randn(shape, device=device).to(dtype) if dtype.is_floating_point
                        else torch.zeros(shape, dtype=dtype, device=device))
        else:
            made.append(item)
    return tuple(made)


def _plain_outputs(module: torch.nn.Module, flat):
    """The output of a pytree-codegen graph is the flat tuple of leaves; give TorchScript the
    module's own structure where it is a tensor or a tuple/list of tensors."""
    spec = getattr(module, "_out_spec", None)
    if spec is None:
        return flat
    if spec.num_leaves == 1 and spec.is_leaf():
        return flat[0]
    children = [spec.child(i) for i in range(spec.num_children)] if hasattr(spec, "child") else []
    if spec.type in (tuple, list) and all(c.is_leaf() for c in children):
        return tuple(flat) if spec.type is tuple else list(flat)
    raise UnsupportedError(
        f"kiln.save(format='torchscript'): outputs structured as {spec} are not supported; "
        "return a tensor or a tuple of tensors, or save as an exported_program")


def _check_condition(condition: bool, message: str) -> None:
    """A run-time assertion of the exported graph (see :mod:`kiln._example_decisions`) in a form
    TorchScript keeps."""
    if not condition:
        raise RuntimeError(message)


def _torchscript_ready(module: torch.nn.Module) -> torch.nn.Module:
    """kiln.compile's GraphModules flatten their inputs through pytree code and call a guard
    module, neither of which TorchScript takes, and call aten overloads (``aten.add.Tensor``),
    which TorchScript cannot name: make a plain copy calling the overload packets
    (``aten.add``, resolved by argument types as in eager) and reading symbolic sizes with
    ``Tensor.size``."""
    if not isinstance(module, torch.fx.GraphModule):
        return module
    graph = torch.fx.Graph()
    env: dict = {}
    for node in module.graph.nodes:
        if node.op == "call_module" and node.target == "_guards_fn":
            continue
        if node.op == "output":
            graph.output(_plain_outputs(module, torch.fx.node.map_arg(node.args[0],
                                                                      lambda n: env[n])))
            continue
        if node.op == "call_function" and node.target is torch.ops.aten.sym_size.int:
            env[node] = graph.call_method("size", (env[node.args[0]], node.args[1]))
            continue
        if node.op == "call_function" and node.target is torch.ops.aten._assert_scalar.default:
            # TorchScript drops an aten._assert_scalar whose result nobody reads; a raise stays.
            env[node] = graph.call_function(_check_condition, tuple(
                torch.fx.node.map_arg(node.args, lambda n: env[n])))
            continue
        copy = graph.node_copy(node, lambda n: env[n])
        if copy.op == "call_function" and isinstance(copy.target, torch._ops.OpOverload):
            copy.target = copy.target.overloadpacket
        env[node] = copy
    return torch.fx.GraphModule(module, graph)


def _to_torchscript(module: torch.nn.Module, args: tuple) -> torch.jit.ScriptModule:
    """torch.jit.script keeps every size symbolic (a dynamic batch works everywhere);
    torch.jit.trace is the fallback for graphs TorchScript cannot compile."""
    plain = _torchscript_ready(module)
    try:
        with warnings.catch_warnings():  # (TorchScript's notes on GraphModule's own __init__)
            warnings.simplefilter("ignore", UserWarning)
            return torch.jit.script(plain)
    except Exception as error:  # TorchScript's compiler rejects some Python constructs
        if getattr(module, "kiln_dynamic_batch", None) is not None or getattr(
                module, "kiln_dynamic_dims", None):
            warnings.warn(
                "kiln.save(format='torchscript'): torch.jit.script failed "
                f"({type(error).__name__}: {str(error).strip().splitlines()[0]}); tracing "
                "instead, which may fix sizes the PyTorch parts of the graph compute from the "
                "batch. Prefer format='exported_program' for a dynamic batch.")
        return torch.jit.trace(plain, args, check_trace=False, strict=False)


def save(module: torch.nn.Module, path: "str | os.PathLike", format: str = "exported_program",
         inputs: "Sequence[torch.Tensor] | torch.Tensor | None" = None) -> None:
    """Saves a module made by :func:`kiln.compile` (or any module calling kiln engines).

    ``format``: "exported_program" (``torch.export.save``; load with ``torch.export.load(path)
    .module()`` or :func:`load`) or "torchscript" (``torch.jit.script`` + ``torch.jit.save``; load
    with ``torch.jit.load`` in Python or C++). ``inputs``: example inputs; default: made from the
    shapes kiln.compile was given. Dynamic dims (a dynamic batch, ``dynamic_shapes``) are kept in
    both formats (TorchScript files are made with torch.jit.script; if that fails, with
    torch.jit.trace, and a warning).
    """
    from . import runtime

    if format not in FORMATS:
        raise InvalidArgumentError(f"kiln.save: format must be one of {FORMATS}, got {format!r}")
    runtime.load_library()
    args = _example_inputs(module, inputs)
    path = os.fspath(path)
    with torch.no_grad():
        if format == "exported_program":
            from ._dynamic_shapes import normalize, torch_dims

            dynamic_dims = getattr(module, "kiln_dynamic_dims", None)
            dynamic_batch = getattr(module, "kiln_dynamic_batch", None)
            if dynamic_dims is None and dynamic_batch is not None:
                dynamic_dims = normalize(None, dynamic_batch, args, (), check_examples=False)
            dynamic_shapes = torch_dims(dynamic_dims, len(args)) if dynamic_dims else None
            program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
            with open(path, "wb") as file:  # (a path not ending in .pt2 makes torch warn)
                torch.export.save(program, file)
        else:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; asked for
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(_to_torchscript(module, args), path)


def _format_of(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise InvalidArgumentError(f"kiln.load: {path} is neither a TorchScript nor an ExportedProgram "
                         "file (not a zip archive)") from error
    if any(name.endswith("serialized_exported_program.json") or "/models/" in name
           for name in names):
        return "exported_program"
    if any(name.endswith("/data.pkl") or name.endswith("/constants.pkl") for name in names):
        return "torchscript"
    raise InvalidArgumentError(f"kiln.load: {path} is neither a TorchScript nor an ExportedProgram file")


def load(path: "str | os.PathLike", device: Any = None) -> torch.nn.Module:
    """Loads a file written by :func:`save` (the format is detected) after loading
    ``libkiln_torch.so``. Returns a callable module. ``device`` is passed to
    ``torch.jit.load``'s map_location for TorchScript files; engines keep their own device."""
    from . import runtime

    runtime.load_library()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"kiln.load: no such file: {path}")
    if _format_of(path) == "exported_program":
        with open(path, "rb") as file:
            return torch.export.load(file).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path, map_location=device)
