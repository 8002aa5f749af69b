"""``kiln.compile``'s dynamic dims: per input, per dim, a ``(min, opt, max)`` range.

The user's ``dynamic_shapes`` (and the ``dynamic_batch`` shorthand) are checked against the
example inputs here and normalised to one :class:`DynamicDim` per (input, dim). A
:class:`DynamicDim` is one size: the same name in several places (input_ids' and
attention_mask's sequence length) is one ``torch.export.Dim``, so torch.export gives those dims
one symbol, and the engine input profiles are derived from the symbols (see
:func:`resolve_symbols` and :class:`kiln._partition_lowering.SymbolRanges`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from ._capi import InvalidArgumentError

__all__ = ["DynamicDim", "DynamicShapeError", "DynamicDimInfo"]

BATCH_NAME = "batch"


class DynamicShapeError(InvalidArgumentError):
    """A dynamic dim that cannot be honoured: a bad range, a dim index out of range, an example
    input outside its range, or torch.export fixing the dim to one size. The message names the
    input, the dim and the problem."""


@dataclass(frozen=True)
class DynamicDim:
    """One dynamic size in ``[min, max]``, engines tuned for ``opt``. Dims given the same
    ``name`` (in one or several inputs) are the same size."""

    name: str
    min: int
    opt: int
    max: int

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise DynamicShapeError(f"DynamicDim: the name must be a Python identifier, "
                                    f"got {self.name!r}")
        for what in ("min", "opt", "max"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DynamicShapeError(f"DynamicDim '{self.name}': {what} must be an int, "
                                        f"got {value!r}")
        if not 1 <= self.min <= self.opt <= self.max:
            raise DynamicShapeError(
                f"DynamicDim '{self.name}': the range must satisfy 1 <= min <= opt <= max, got "
                f"(min={self.min}, opt={self.opt}, max={self.max})")

    @property
    def range(self) -> tuple[int, int, int]:
        return self.min, self.opt, self.max


@dataclass
class DynamicDimInfo:
    """A dynamic dim as :class:`kiln.CompileReport` lists it."""

    name: str
    min: int
    opt: int
    max: int
    uses: list[str] = field(default_factory=list)  # "input 0 (input_ids) dim 1"

    def __str__(self) -> str:
        return f"{self.name} in [{self.min}, {self.max}] (opt {self.opt}): {', '.join(self.uses)}"


# (input index -> {dim index -> DynamicDim}); inputs without dynamic dims are left out.
DimSpecs = dict[int, dict[int, DynamicDim]]


def parameter_names(module: torch.nn.Module) -> list[str]:
    """The names of ``module.forward``'s positional parameters (for messages and name keys)."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def describe_input(index: int, names: Sequence[str]) -> str:
    return f"input {index} ({names[index]})" if index < len(names) else f"input {index}"


def _as_dim(spec: Any, where: str, default_name: str) -> DynamicDim:
    if isinstance(spec, DynamicDim):
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 3:
        values = tuple(spec)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise DynamicShapeError(f"{where}: the range must be three ints (min, opt, max), "
                                    f"got {spec!r}")
        lo, opt, hi = values
        if not 1 <= lo <= opt <= hi:
            raise DynamicShapeError(f"{where}: the range must satisfy 1 <= min <= opt <= max, "
                                    f"got {tuple(values)}")
        return DynamicDim(default_name, lo, opt, hi)
    raise DynamicShapeError(f"{where}: expected (min, opt, max) or a kiln.DynamicDim, "
                            f"got {spec!r}")


def normalize(dynamic_shapes: Any, dynamic_batch: Any, inputs: Sequence[Any],
              names: Sequence[str], check_examples: bool = True) -> DimSpecs:
    """Checks the user's dynamic dims against the example ``inputs``. ``dynamic_shapes``: None, a
    sequence with one entry per input, or a mapping from input index or forward parameter name
    to an entry; an entry is None or ``{dim: (min, opt, max) | DynamicDim}``. ``dynamic_batch``:
    ``(min, opt, max)`` for dim 0 of every tensor input (one dim named "batch").
    ``check_examples``: check the inputs' sizes against the ranges (off for fake values, whose
    sizes are already symbols). Returns the dims per input; raises :class:`DynamicShapeError`."""
    specs: DimSpecs = {}
    entries = _entries(dynamic_shapes, inputs, names)
    for index, entry in entries.items():
        if entry is None:
            continue
        who = describe_input(index, names)
        if not isinstance(entry, Mapping):
            raise DynamicShapeError(f"dynamic_shapes: {who}: expected None or a dict "
                                    f"{{dim: (min, opt, max)}}, got {entry!r}")
        x = inputs[index]
        if not isinstance(x, torch.Tensor):
            raise DynamicShapeError(f"dynamic_shapes: {who} is a {type(x).__name__}, not a "
                                    "tensor: only tensor dims can be dynamic")
        label = re.sub(r"\W", "_", names[index]) if index < len(names) else f"input{index}"
        for dim, spec in entry.items():
            if isinstance(dim, bool) or not isinstance(dim, int):
                raise DynamicShapeError(f"dynamic_shapes: {who}: dim keys must be ints, got "
                                        f"{dim!r}")
            if not -x.dim() <= dim < x.dim():
                raise DynamicShapeError(
                    f"dynamic_shapes: {who} dim {dim}: out of range, the input has "
                    f"{x.dim()} dim(s) (shape {list(x.shape)})")
            dim %= x.dim()
            specs.setdefault(index, {})[dim] = _as_dim(
                spec, f"dynamic_shapes: {who} dim {dim}", f"{label}_dim{dim}")
    if dynamic_batch is not None:
        if isinstance(dynamic_batch, int) or not isinstance(dynamic_batch, (tuple, list)) \
                or len(dynamic_batch) != 3:
            raise DynamicShapeError(f"dynamic_batch must be (min, opt, max), got "
                                    f"{dynamic_batch!r}")
        batch = _as_dim(tuple(int(v) for v in dynamic_batch), f"dynamic_batch {dynamic_batch}",
                        BATCH_NAME)
        for index, x in enumerate(inputs):
            if not isinstance(x, torch.Tensor):
                continue
            if x.dim() == 0:
                raise DynamicShapeError(f"dynamic_batch: {describe_input(index, names)} is a "
                                        "scalar tensor (no batch dim)")
            given = specs.setdefault(index, {})
            if 0 in given and given[0] != batch:
                raise DynamicShapeError(
                    f"dynamic_batch and dynamic_shapes both set {describe_input(index, names)} "
                    f"dim 0 ({batch.range} and {given[0].range})")
            given[0] = batch
    if check_examples:
        _check_examples(specs, inputs, names)
    return specs


def _entries(dynamic_shapes: Any, inputs: Sequence[Any], names: Sequence[str]) -> dict:
    if dynamic_shapes is None:
        return {}
    if isinstance(dynamic_shapes, Mapping):
        entries = {}
        for key, entry in dynamic_shapes.items():
            if isinstance(key, str):
                if key not in names[:len(inputs)]:
                    raise DynamicShapeError(
                        f"dynamic_shapes: no input named {key!r} (the positional inputs are "
                        f"{list(names[:len(inputs)])})")
                key = names.index(key)
            elif isinstance(key, bool) or not isinstance(key, int) \
                    or not 0 <= key < len(inputs):
                raise DynamicShapeError(f"dynamic_shapes: {key!r} is not an input index or "
                                        f"name ({len(inputs)} input(s))")
            entries[key] = entry
        return entries
    if isinstance(dynamic_shapes, (list, tuple)):
        if len(dynamic_shapes) != len(inputs):
            raise DynamicShapeError(f"dynamic_shapes has {len(dynamic_shapes)} entries for "
                                    f"{len(inputs)} input(s); give one per input (None: static)")
        return dict(enumerate(dynamic_shapes))
    raise DynamicShapeError(
        "dynamic_shapes must be a sequence with one entry per input or a dict keyed by input "
        f"index or name, got {type(dynamic_shapes).__name__}")


def _check_examples(specs: DimSpecs, inputs: Sequence[Any], names: Sequence[str]) -> None:
    by_name: dict[str, tuple[DynamicDim, str, int]] = {}
    for index in sorted(specs):
        for dim, spec in sorted(specs[index].items()):
            where = f"{describe_input(index, names)} dim {dim}"
            size = int(inputs[index].shape[dim])
            if not spec.min <= size <= spec.max:
                raise DynamicShapeError(
                    f"dynamic dim '{spec.name}' {spec.range}: {where} has size {size} in the "
                    f"example inputs, outside [{spec.min}, {spec.max}]")
            if size < 2:
                raise DynamicShapeError(
                    f"dynamic dim '{spec.name}': trace with a size of at least 2 ({where} has "
                    f"{size}); torch.export specialises sizes 0 and 1")
            seen = by_name.get(spec.name)
            if seen is None:
                by_name[spec.name] = (spec, where, size)
                continue
            other, other_where, other_size = seen
            if other != spec:
                raise DynamicShapeError(
                    f"dynamic dim '{spec.name}' has two ranges: {other.range} at {other_where} "
                    f"and {spec.range} at {where}")
            if other_size != size:
                raise DynamicShapeError(
                    f"dynamic dim '{spec.name}' is one size but the example inputs differ: "
                    f"{other_where} has {other_size}, {where} has {size}")


def torch_dims(specs: DimSpecs, count: int) -> tuple:
    """torch.export's ``dynamic_shapes`` (one entry per input): one ``torch.export.Dim`` per
    name, so dims sharing a name share a symbol."""
    made: dict[str, Any] = {}

    def dim_of(spec: DynamicDim):
        if spec.name not in made:
            made[spec.name] = torch.export.Dim(spec.name, min=spec.min, max=spec.max)
        return made[spec.name]

    return tuple({d: dim_of(s) for d, s in specs[i].items()} if specs.get(i) else None
                 for i in range(count))


def uses(specs: DimSpecs, names: Sequence[str]) -> dict[str, list[str]]:
    """name -> the places it is used ("input 0 (x) dim 1")."""
    result: dict[str, list[str]] = {}
    for index in sorted(specs):
        for dim, spec in sorted(specs[index].items()):
            result.setdefault(spec.name, []).append(f"{describe_input(index, names)} dim {dim}")
    return result


def explain_export_error(error: Exception, specs: DimSpecs,
                         names: Sequence[str]) -> DynamicShapeError | None:
    """A :class:`DynamicShapeError` naming the dims torch.export's constraint violation is about,
    or None when ``error`` mentions none of them."""
    text = str(error)
    all_uses = uses(specs, names)
    ranges = {s.name: s for per_input in specs.values() for s in per_input.values()}
    mentioned = [name for name in all_uses if re.search(rf"\b{re.escape(name)}\b", text)]
    if not mentioned:
        return None
    lines = []
    for name in mentioned:
        spec = ranges[name]
        lines.append(f"dynamic dim '{name}' {spec.range} ({', '.join(all_uses[name])}): "
                     + _problem(name, text, all_uses))
    torch_lines = [line for line in text.strip().splitlines() if line.strip()][:12]
    return DynamicShapeError("kiln.compile: torch.export rejects the dynamic dims:\n  "
                             + "\n  ".join(lines) + "\ntorch.export says:\n  "
                             + "\n  ".join(torch_lines))


def _problem(name: str, text: str, all_uses: Mapping[str, list[str]]) -> str:
    """What torch.export's constraint violation says about ``name``, in kiln's words."""
    about = [line for line in text.splitlines() if re.search(rf"\b{re.escape(name)}\b", line)]
    for line in about:
        if re.search(r"speciali[sz]ed it to be a constant \((\d+)\)", line):
            size = re.search(r"constant \((\d+)\)", line).group(1)
            return f"the traced code fixes it to size {size}"
    problems = []
    for line in about:
        if "must always be equal" in line:
            others = [other for other in all_uses if other != name
                      and re.search(rf"\b{re.escape(other)}\b", line)]
            if others:
                problems.append(f"the traced code needs it equal to '{others[0]}': give both "
                                "one kiln.DynamicDim (one name and range)")
        elif "Not all values" in line:
            problems.append("the traced code does not hold over the whole range ("
                            + line.strip().lstrip("- ") + ")")
    return "; ".join(dict.fromkeys(problems)) or "torch.export cannot keep it dynamic"


def resolve_symbols(placeholders: Sequence[torch.fx.Node], specs: DimSpecs,
                    names: Sequence[str]) -> dict:
    """sympy symbol of the exported graph -> :class:`DynamicDim`, read from the placeholders'
    fake values (``placeholders[i]`` is input i). Raises :class:`DynamicShapeError` where
    torch gave a dim a fixed size or an expression instead of a symbol of its own."""
    symbols: dict = {}
    for index, per_input in sorted(specs.items()):
        if index >= len(placeholders):
            raise DynamicShapeError(f"dynamic_shapes: {describe_input(index, names)} is not an "
                                    f"input of the exported graph ({len(placeholders)} inputs)")
        val = placeholders[index].meta.get("val")
        for dim, spec in sorted(per_input.items()):
            where = f"{describe_input(index, names)} dim {dim}"
            size = val.shape[dim] if isinstance(val, torch.Tensor) else None
            if not isinstance(size, torch.SymInt):
                raise DynamicShapeError(f"dynamic dim '{spec.name}' {spec.range}: torch.export "
                                        f"fixed {where} to size {size}")
            expr = size.node.expr
            if not getattr(expr, "is_Symbol", False):
                raise DynamicShapeError(f"dynamic dim '{spec.name}': torch.export made {where} "
                                        f"the expression {expr}, not a size of its own")
            other = symbols.get(expr)
            if other is not None and other.range != spec.range:
                raise DynamicShapeError(
                    f"dynamic dims '{other.name}' {other.range} and '{spec.name}' {spec.range} "
                    f"are one size in the traced code ({where}); give them one range")
            symbols.setdefault(expr, spec)
    return symbols
