"""Exporting a module whose Python code branches on a data-dependent value.

``torch.export`` stops at ``if n > 0:`` when ``n`` comes from a tensor's values (a count after a
filter, an ``.item()``): the branch cannot be traced for every value. torchvision's detection
models do this (``BoxCoder.decode`` tests the proposal count). :func:`export_with_example_decisions`
exports such a module again with torch's draft export, which takes each such decision from the
example inputs' real values and inserts an ``aten._assert_scalar`` for it into the graph. Those
asserts stay in the compiled module, run by PyTorch beside the engines, so an input for which
a decision would go the other way raises "Runtime assertion failed for expression ..." instead
of taking the traced branch silently. Any other kind of unsound step the draft export reports (a
guard that changed the requested dynamic shapes, a custom op without a usable fake kernel) is not
accepted: the original error is raised with the reason.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

__all__ = ["ExampleAssumption", "export_with_example_decisions", "is_data_dependent_guard"]

_log = logging.getLogger("kiln.compile")


@dataclass
class ExampleAssumption:
    """One decision the export took from the example inputs' values, checked at run time."""

    expression: str  # torch's symbolic condition, e.g. "u0 > 0"
    value: str  # what it was for the example, e.g. "True"
    where: str  # the user code that asked, "file:line in function: source", or ""

    def __str__(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"{self.expression} taken as {self.value} from the example{at} (asserted at run time)"


def is_data_dependent_guard(error: BaseException) -> bool:
    """True when ``error`` (or an exception it was raised from) is torch's "guard on a
    data-dependent symbol": Python control flow on a value only known at run time."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, GuardOnDataDependentSymNode):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _user_location(data: dict, filenames: dict) -> str:
    """The innermost user frame of a draft-export record: torch's structured frames hold the line
    number as "line", the source text as "loc" and the file as an interned id."""
    stack = data.get("user_stack") or []
    if not stack or not isinstance(stack[-1], dict):
        return ""
    frame = stack[-1]
    filename = frame.get("filename")
    filename = filenames.get(filename, filename) if isinstance(filenames, dict) else filename
    text = f"{filename}:{frame.get('line', '?')}"
    if frame.get("name"):
        text += f" in {frame['name']}"
    if isinstance(frame.get("loc"), str) and frame["loc"].strip():
        text += f": {frame['loc'].strip()}"
    return text


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]):
    """The draft export warns at length about what the report below says in one line each."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_with_example_decisions(module: torch.nn.Module, inputs: tuple, dynamic_shapes,
                                  original: BaseException
                                  ) -> tuple[torch.export.ExportedProgram, list[ExampleAssumption]]:
    """Exports ``module`` taking data-dependent decisions from ``inputs`` (see the module doc).
    Returns the program (with its runtime asserts) and the decisions taken. Raises ``original``
    when torch has no draft export, when the draft export fails, or when it reports anything but
    data-dependent decisions."""
    draft_export = getattr(torch.export, "draft_export", None)
    if draft_export is None:
        raise original
    try:
        with _quiet(("torch.export._draft_export", "torch.fx.experimental.symbolic_shapes",
                     "torch._subclasses.fake_tensor")):
            program = draft_export(module, inputs, dynamic_shapes=dynamic_shapes)
    except Exception as error:  # the first error says what the user's code does; keep it
        raise original from error
    report = getattr(program, "_report", None)
    failures = list(getattr(report, "failures", []) or [])
    filenames = dict(getattr(report, "str_to_filename", {}) or {})
    try:  # names interned before this export are not in the report
        from torch._logging.structured import INTERN_TABLE

        filenames.update({number: name for name, number in INTERN_TABLE.items()
                          if number not in filenames})
    except ImportError:
        pass
    assumptions: list[ExampleAssumption] = []
    for failure in failures:
        kind = str(getattr(failure, "failure_type", "")).lower()
        data = getattr(failure, "data", {}) or {}
        if "data_dependent" not in kind and "data dependent" not in kind:
            raise RuntimeError(
                "kiln.compile: torch.export stopped at a data-dependent branch, and exporting "
                "it with decisions taken from the example inputs was not sound: "
                f"{kind or 'an unknown report'} ({data.get('expr') or data.get('op') or ''})"
            ) from original
        assumptions.append(ExampleAssumption(str(data.get("expr", "?")), str(data.get("result", "?")),
                                             _user_location(data, filenames)))
    asserts = sum(1 for node in program.graph.nodes
                  if node.op == "call_function"
                  and node.target is torch.ops.aten._assert_scalar.default)
    if assumptions and asserts == 0:
        # A decision without its check would be a silent specialization.
        raise RuntimeError("kiln.compile: exporting a data-dependent branch with the example's "
                           "decision left no run-time check in the graph") from original
    for assumption in assumptions:
        _log.warning("kiln.compile: %s", assumption)
    return program, assumptions
