"""Einsum on the CPU backend: the conformance tuples of cuda_cases_einsum.py against ONNX Runtime,
named errors for bad models, a build with a dynamic batch, and torch.einsum modules exported with
torch.onnx.export(dynamo=True) against eager PyTorch.

kiln has no Einsum kernel: the builder lowers each Einsum to Transpose/Reshape/MatMul/ReduceSum.
torch 2.13's exporter writes torch.einsum as one ONNX Einsum node; the tests check that it does.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import kiln
from cuda_cases_einsum import CASES
from kiln_testing import assert_outputs_match, case_from_tuple, run_kiln, run_ort

TUPLE_CASES = [case_from_tuple(entry) for entry in CASES]


@pytest.mark.parametrize("case", TUPLE_CASES, ids=[c.id for c in TUPLE_CASES])
def test_matches_onnxruntime(case):
    model = case.model()
    got = run_kiln(model, case.feeds)
    equation = case.nodes[0].attribute[0].s.decode()
    operands = list(case.feeds.values())
    if operands[0].dtype == np.float16:
        # float16 against numpy in float32 (kiln's MatMul accumulates in float32).
        want = np.einsum(equation, *[x.astype(np.float32) for x in operands])
        np.testing.assert_allclose(got["y"].astype(np.float32), want, rtol=1e-2, atol=1e-1)
        assert got["y"].dtype == np.float16
        return
    assert_outputs_match(got, run_ort(model, case.feeds), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["y"], np.einsum(equation, *operands), rtol=1e-5, atol=1e-5)


def test_tuples_cover_the_required_equations():
    equations = {entry[3]["equation"] for entry in CASES}
    required = {"ij,jk->ik", "bij,bjk->bik", "bhqd,bhkd->bhqk", "bhqk,bhkd->bhqd",
                "...ij,...jk->...ik", "ij->ji", "ij->i", "ij->", "i,j->ij", "bid,jd->bij",
                "ij,ij->i", "ij,jk"}
    assert required <= equations, sorted(required - equations)


# ---- bad models -------------------------------------------------------------------------------

def einsum_model(equation, shapes, elem_type=TensorProto.FLOAT, attrs=None) -> bytes:
    """One Einsum node over inputs x0, x1, ... (serialised without the ONNX checker, so that
    malformed equations reach kiln)."""
    names = [f"x{i}" for i in range(len(shapes))]
    attributes = {"equation": equation} if equation is not None else {}
    attributes.update(attrs or {})
    node = helper.make_node("Einsum", names, ["y"], name="einsum_node", **attributes)
    inputs = [helper.make_tensor_value_info(n, elem_type, s) for n, s in zip(names, shapes)]
    graph = helper.make_graph([node], "einsum", inputs, [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


@pytest.mark.parametrize("equation, shapes, fragment", [
    ("ij->i->j", [[3, 4]], "'-'"),
    ("i.j->i", [[3, 4]], "'.'"),
    ("i$j->i", [[3, 4]], "'$'"),
    ("ij->ik", [[3, 4]], "output label 'k'"),
    ("ij->ii", [[3, 4]], "repeats the label 'i'"),
    ("...ij->ij", [[2, 3, 4]], "'...' standing for 1 dimension(s)"),
    ("ij,jk->ik", [[3, 4]], "2 input term(s) but the node has 1 input(s)"),
    ("ij->i", [[3, 4], [4, 5]], "1 input term(s) but the node has 2 input(s)"),
    ("ijk,jk->ik", [[3, 4], [4, 5]], "rank 2"),
    ("ij,jk->ik", [[3, 4], [5, 6]], "label 'j' sizes 4 and 5"),
    ("...ij,...jk->...ik", [[2, 3, 4], [3, 4, 5]], "'...[0]' sizes 2 and 3"),
    (None, [[3, 4]], "equation"),
])
def test_bad_models_fail_with_named_errors(equation, shapes, fragment):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(einsum_model(equation, shapes))
    message = str(info.value)
    assert "einsum_node" in message and fragment in message, message


@pytest.mark.parametrize("equation, shapes, elem_type, fragment", [
    ("i,i,i->i", [[3], [3], [3]], TensorProto.FLOAT, "3 operands"),
    ("ii->i", [[3, 3]], TensorProto.FLOAT, "diagonal"),
    ("ij,jk->ik", [[3, 4], [4, 5]], TensorProto.INT32, "int32"),
])
def test_unsupported_models_fail_with_named_errors(equation, shapes, elem_type, fragment):
    with pytest.raises(kiln.UnsupportedError) as info:
        kiln.build_onnx(einsum_model(equation, shapes, elem_type))
    message = str(info.value)
    assert "einsum_node" in message and fragment in message, message


# ---- dynamic batch ----------------------------------------------------------------------------

@pytest.mark.parametrize("equation, shapes", [
    ("bid,jd->bij", [["N", 3, 4], [5, 4]]),
    ("bhqd,bhkd->bhqk", [["N", 2, 3, 8], ["N", 2, 5, 8]]),
    ("bij,bjk->bki", [["N", 3, 4], ["N", 4, 5]]),
])
def test_dynamic_batch_build_runs_at_several_batch_sizes(equation, shapes):
    model = einsum_model(equation, shapes)
    profiles = {}
    for i, shape in enumerate(shapes):
        if shape[0] == "N":
            rest = list(shape[1:])
            profiles[f"x{i}"] = ([1] + rest, [2] + rest, [8] + rest)
    engine = kiln.Engine(kiln.build_onnx(model, profiles=profiles))
    rng = np.random.default_rng(3)
    for batch in (1, 3, 8):
        feeds = {f"x{i}": rng.uniform(-2, 2, [batch if d == "N" else d for d in shape])
                 .astype(np.float32) for i, shape in enumerate(shapes)}
        got = engine.run(feeds)["y"]
        np.testing.assert_allclose(got, np.einsum(equation, *feeds.values()), rtol=1e-5,
                                   atol=1e-5)


# ---- PyTorch modules exported with dynamo=True -------------------------------------------------

class Einsum(torch.nn.Module):
    def __init__(self, equation):
        super().__init__()
        self.equation = equation

    def forward(self, *operands):
        return torch.einsum(self.equation, *operands)


class BilinearAttention(torch.nn.Module):
    """Scores, softmax and values, all as einsums, with a learned projection."""

    def __init__(self, dim=8):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dim, dim) / dim**0.5)

    def forward(self, q, k, v):
        projected = torch.einsum("bhqd,de->bhqe", q, self.weight)
        scores = torch.einsum("bhqe,bhke->bhqk", projected, k).softmax(-1)
        return torch.einsum("bhqk,bhkd->bhqd", scores, v)


def export(module, inputs, dynamic_shapes=None):
    model = torch.onnx.export(module.eval(), inputs, dynamo=True, verbose=False,
                              dynamic_shapes=dynamic_shapes).model_proto
    assert "Einsum" in {n.op_type for n in model.graph.node}, "the exporter decomposed einsum"
    return model


@pytest.mark.parametrize("equation, shapes", [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 8), (2, 3, 6, 8)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (2, 3, 5, 6)]),
    ("bid,jd->bij", [(2, 3, 4), (5, 4)]),
    ("ij->i", [(3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
])
def test_torch_einsum(equation, shapes):
    generator = torch.Generator().manual_seed(len(equation))
    inputs = tuple(torch.randn(*s, generator=generator) for s in shapes)
    model = export(Einsum(equation), inputs)
    got = run_kiln(model.SerializeToString(),
                   {i.name: x.numpy() for i, x in zip(model.graph.input, inputs)})
    with torch.no_grad():
        want = Einsum(equation)(*inputs).numpy()
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-5, atol=1e-5)


def test_torch_bilinear_attention_with_dynamic_batch():
    torch.manual_seed(0)
    module = BilinearAttention()
    inputs = tuple(torch.randn(2, 2, n, 8) for n in (4, 6, 6))
    batch = torch.export.Dim("batch", min=1, max=8)
    model = export(module, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    names = [i.name for i in model.graph.input]
    profiles = {name: ([1] + list(x.shape[1:]), list(x.shape), [8] + list(x.shape[1:]))
                for name, x in zip(names, inputs)}
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString(), profiles=profiles))
    for batch_size in (1, 2, 5):
        feeds = [torch.randn(batch_size, *x.shape[1:]) for x in inputs]
        got = engine.run({name: x.numpy() for name, x in zip(names, feeds)})
        with torch.no_grad():
            want = module(*feeds).numpy()
        np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-5, atol=1e-5)

