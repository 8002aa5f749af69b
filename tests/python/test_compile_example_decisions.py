"""kiln.compile on modules whose Python code branches on a data-dependent value
(python/kiln/_example_decisions.py): the export takes the example's branch, the report says so,
and the compiled, saved and reloaded modules check the decision at run time."""

from __future__ import annotations

import types

import pytest
import torch

import kiln
from kiln import _example_decisions


class BranchOnCount(torch.nn.Module):
    """``if count > 0``, count a data-dependent size: torch.export alone stops here."""

    def forward(self, x):
        count = torch.nonzero(x > 0).shape[0]
        if count > 0:
            return x * 2 + count
        return x - 1


def _positive_somewhere(seed: int) -> torch.Tensor:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(seed))
    x[0, 0] = 1.0
    return x


def _all_negative() -> torch.Tensor:
    return -torch.rand(4, 8, generator=torch.Generator().manual_seed(3)) - 0.1


@pytest.fixture(scope="module")
def compiled():
    model = BranchOnCount().eval()
    with pytest.raises(Exception) as plain:
        torch.export.export(model, (_positive_somewhere(0),))
    assert _example_decisions.is_data_dependent_guard(plain.value)
    return model, kiln.compile(model, _positive_somewhere(0))


def test_the_report_names_each_decision_and_where_the_code_took_it(compiled):
    _, gm = compiled
    assumptions = gm.kiln_report.assumptions
    assert len(assumptions) == 1
    decision = assumptions[0]
    assert decision.expression.replace(" ", "") == "u0>0" and decision.value == "True"
    assert "test_compile_example_decisions.py" in decision.where
    assert "if count > 0" in decision.where
    assert "assumed u0 > 0 taken as True from the example" in str(gm.kiln_report)
    assert gm.kiln_report.engines, "the tensor work still runs in a kiln engine"


def test_inputs_taking_the_same_branch_match_eager(compiled):
    model, gm = compiled
    for seed in (0, 1, 2):
        x = _positive_somewhere(seed)
        torch.testing.assert_close(gm(x), model(x), atol=2e-5, rtol=1e-5)


def test_an_input_taking_the_other_branch_is_an_error_not_the_traced_branch(compiled):
    _, gm = compiled
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):
        gm(_all_negative())


@pytest.mark.parametrize("fmt", ["exported_program", "torchscript"])
def test_saved_modules_keep_the_check(compiled, fmt, tmp_path):
    model, gm = compiled
    path = tmp_path / ("m.pt2" if fmt == "exported_program" else "m.ts")
    kiln.save(gm, path, format=fmt)
    loaded = kiln.load(path)
    x = _positive_somewhere(5)
    torch.testing.assert_close(loaded(x), model(x), atol=2e-5, rtol=1e-5)
    with pytest.raises(Exception, match="assertion failed|Runtime assertion"):
        loaded(_all_negative())


def test_a_draft_export_reporting_more_than_decisions_is_refused(monkeypatch):
    """A guard that changed the dynamic shapes or a custom op without a fake kernel is not a
    decision a run-time assert checks: the original export error stays the answer."""
    failure = types.SimpleNamespace(failure_type="GUARD_ADDED", data={"expr": "Eq(s0, 4)"})
    program = types.SimpleNamespace(_report=types.SimpleNamespace(failures=[failure]),
                                    graph=torch.fx.Graph())
    monkeypatch.setattr(torch.export, "draft_export", lambda *a, **k: program)
    original = RuntimeError("the export's own error")
    with pytest.raises(RuntimeError, match="not sound: guard_added") as raised:
        _example_decisions.export_with_example_decisions(BranchOnCount(), (torch.ones(2),), None,
                                                         original)
    assert raised.value.__cause__ is original


def test_a_decision_without_a_check_in_the_graph_is_refused(monkeypatch):
    failure = types.SimpleNamespace(failure_type="DATA_DEPENDENT_ERROR",
                                    data={"expr": "u0 > 0", "result": "True"})
    program = types.SimpleNamespace(_report=types.SimpleNamespace(failures=[failure]),
                                    graph=torch.fx.Graph())
    monkeypatch.setattr(torch.export, "draft_export", lambda *a, **k: program)
    with pytest.raises(RuntimeError, match="no run-time check"):
        _example_decisions.export_with_example_decisions(BranchOnCount(), (torch.ones(2),), None,
                                                         RuntimeError("original"))


def test_other_export_errors_are_not_taken_for_data_dependent_ones():
    assert not _example_decisions.is_data_dependent_guard(ValueError("no"))
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    try:
        try:
            raise GuardOnDataDependentSymNode(None, "u0 > 0")
        except GuardOnDataDependentSymNode as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert _example_decisions.is_data_dependent_guard(outer)
