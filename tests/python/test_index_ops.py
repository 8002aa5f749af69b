"""CumSum, ArgMax, ArgMin and TopK on kiln's CPU backend: the conformance tuples of
cuda_cases_index.py against ONNX Runtime, NaN ordering, value inputs known only at run time,
named errors for bad input, and PyTorch modules (torch.cumsum / argmax / argmin / topk) exported
with torch.onnx.export(dynamo=True) compared with eager PyTorch."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import kiln
from cuda_cases_index import CASES
from kiln_testing import case_from_tuple, run_kiln, run_ort

# ---- conformance tuples against ONNX Runtime ---------------------------------------------------


def _cumsum_reference(x: np.ndarray, axis: int, exclusive: bool, reverse: bool) -> np.ndarray:
    """float64 (or exact integer) reference, independent of both ONNX Runtime and kiln."""
    work = x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x.astype(np.int64)
    if reverse:
        work = np.flip(work, axis)
    out = np.cumsum(work, axis=axis)
    if exclusive:
        out = out - work
    if reverse:
        out = np.flip(out, axis)
    return out


def _canonical_topk(values: np.ndarray, indices: np.ndarray, axis: int):
    """The winners of an unsorted TopK in index order (ONNX leaves their order open)."""
    order = np.argsort(indices, axis=axis, kind="stable")
    return (np.take_along_axis(values, order, axis=axis),
            np.take_along_axis(indices, order, axis=axis))


@pytest.mark.parametrize("entry", CASES, ids=[e[0] for e in CASES])
def test_case_matches_onnxruntime(entry):
    case = case_from_tuple(entry)
    model = case.model()
    got = run_kiln(model.SerializeToString(), case.feeds)
    want = run_ort(model, case.feeds)
    assert list(got) == list(want)
    op = entry[1]
    attrs = entry[3]
    x = case.feeds["x"]
    for name, ref in want.items():
        out = got[name]
        assert out.dtype == ref.dtype, name
        assert out.shape == ref.shape, name
    if op == "CumSum":
        axis = int(np.asarray(case.consts["c_axis"]).reshape(-1)[0])
        out, ref = got["y"], want["y"]
        exact = _cumsum_reference(x, axis, bool(attrs.get("exclusive", 0)),
                                  bool(attrs.get("reverse", 0)))
        if np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(out, ref)
            np.testing.assert_array_equal(out, exact.astype(x.dtype))
        elif x.dtype == np.float32:
            # kiln sums in double: within float32 rounding of the exact sums. ONNX Runtime sums
            # in float32, so its error grows with the line length.
            np.testing.assert_allclose(out, exact, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * max(1, x.shape[axis] // 1000))
        else:
            # float16: the exact sum rounded once (ONNX Runtime's float16 sums drift further).
            scale = max(1.0, float(np.max(np.abs(exact))))
            assert float(np.max(np.abs(out.astype(np.float64) - exact))) <= 1e-3 * scale
            assert float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) <= 5e-2 * scale
        return
    if op == "TopK" and attrs.get("sorted", 1) == 0:
        axis = attrs.get("axis", -1)
        got_v, got_i = _canonical_topk(got["y0"], got["y1"], axis)
        want_v, want_i = _canonical_topk(want["y0"], want["y1"], axis)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_array_equal(got_v, want_v)
        return
    for name, ref in want.items():
        # Selection ops move values without arithmetic: exact.
        np.testing.assert_array_equal(got[name], ref, err_msg=name)


def test_cases_cover_every_op_and_dtype():
    ops_dtypes = {(e[1], e[2][0][1]) for e in CASES}
    for op in ("CumSum", "ArgMax", "TopK"):
        for dtype in ("float32", "float16", "int32", "int64"):
            assert (op, dtype) in ops_dtypes, (op, dtype)
    assert {e[1] for e in CASES} == {"CumSum", "ArgMax", "ArgMin", "TopK"}


# ---- single-node models ------------------------------------------------------------------------

def _model(op, x_shape, attrs=None, consts=(), runtime=(), outputs=("y",),
           x_type=TensorProto.FLOAT, opset=18) -> onnx.ModelProto:
    """Node `op` over input x plus `consts` ((name, array) initializers) and `runtime`
    ((name, elem_type, shape) graph inputs), in the order consts then runtime."""
    inputs = [helper.make_tensor_value_info("x", x_type, x_shape)]
    inputs += [helper.make_tensor_value_info(n, t, s) for n, t, s in runtime]
    names = ["x"] + [n for n, _ in consts] + [n for n, _, _ in runtime]
    node = helper.make_node(op, names, list(outputs), name="index_node", **(attrs or {}))
    graph = helper.make_graph([node], "g", inputs, [onnx.ValueInfoProto(name=o) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(v), n)
                                           for n, v in consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def test_argmax_argmin_nan_follow_numpy():
    x = np.array([[1, np.nan, 3, 2], [np.nan, 1, 3, 0], [1, 3, np.nan, np.nan], [-1, -1, -4, -4]],
                 dtype=np.float32)
    for op, reference in (("ArgMax", np.argmax), ("ArgMin", np.argmin)):
        got = run_kiln(_model(op, [4, 4], {"axis": 1, "keepdims": 0}), {"x": x})["y"]
        np.testing.assert_array_equal(got, reference(x, axis=1))
    last = run_kiln(_model("ArgMax", [4, 4], {"axis": 1, "keepdims": 0, "select_last_index": 1}),
                    {"x": x})["y"]
    np.testing.assert_array_equal(last, [1, 0, 3, 1])


def test_topk_nan_ranks_highest_like_onnxruntime():
    x = np.array([[1, np.nan, 3, 2, np.nan], [0.5, -1, np.nan, 4, 4]], dtype=np.float32)
    for largest in (1, 0):
        model = _model("TopK", [2, 5], {"largest": largest},
                       consts=[("k", np.array([3], np.int64))], outputs=("v", "i"))
        got, want = run_kiln(model, {"x": x}), run_ort(model, {"x": x})
        np.testing.assert_array_equal(got["i"], want["i"])
        np.testing.assert_array_equal(got["v"], want["v"])  # NaN == NaN in assert_array_equal


def test_value_inputs_known_only_at_run_time():
    """K and axis as graph inputs: the runtime reads their values on the host."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 40)).astype(np.float32)
    model = _model("TopK", [3, 40], runtime=[("k", TensorProto.INT64, [1])], outputs=("v", "i"))
    for k in (1, 17, 40):
        feeds = {"x": x, "k": np.array([k], np.int64)}
        got, want = run_kiln(model, feeds), run_ort(model, feeds)
        assert got["v"].shape == (3, k)
        np.testing.assert_array_equal(got["i"], want["i"])
        np.testing.assert_array_equal(got["v"], want["v"])
    model = _model("CumSum", [3, 40], {"reverse": 1}, runtime=[("axis", TensorProto.INT64, [])])
    for axis in (0, 1, -1):
        feeds = {"x": x, "axis": np.array(axis, np.int64)}
        np.testing.assert_allclose(run_kiln(model, feeds)["y"], run_ort(model, feeds)["y"],
                                   rtol=1e-5, atol=1e-5)
    bad = {"x": x, "k": np.array([41], np.int64)}
    with pytest.raises(kiln.InvalidArgumentError, match="larger than the axis length 40"):
        run_kiln(_model("TopK", [3, 40], runtime=[("k", TensorProto.INT64, [1])],
                        outputs=("v", "i")), bad)


@pytest.mark.parametrize("model, error, fragments", [
    (lambda: _model("TopK", [2, 5], consts=[("k", np.array([6], np.int64))], outputs=("v", "i")),
     kiln.InvalidArgumentError, ["index_node", "K = 6", "larger than the axis length 5"]),
    (lambda: _model("TopK", [2, 5], consts=[("k", np.array([-1], np.int64))], outputs=("v", "i")),
     kiln.InvalidArgumentError, ["index_node", "negative"]),
    (lambda: _model("TopK", [2, 5], {"axis": 2}, consts=[("k", np.array([1], np.int64))],
                    outputs=("v", "i")),
     kiln.InvalidArgumentError, ["index_node", "axis 2 is out of range"]),
    (lambda: _model("CumSum", [2, 5], consts=[("axis", np.array(-3, np.int64))]),
     kiln.InvalidArgumentError, ["index_node", "axis -3 is out of range"]),
    (lambda: _model("CumSum", [2, 5], consts=[("axis", np.array([0, 1], np.int64))]),
     kiln.InvalidArgumentError, ["index_node", "input 1 (axis)"]),
    (lambda: _model("CumSum", [2, 5], consts=[("axis", np.array(0, np.int64))],
                    x_type=TensorProto.INT8),
     kiln.UnsupportedError, ["index_node", "int8"]),
    (lambda: _model("ArgMax", [2, 0], {"axis": 1}),
     kiln.InvalidArgumentError, ["index_node", "length 0"]),
    (lambda: _model("ArgMin", [2, 3], {"select_last_index": 2}),
     kiln.InvalidArgumentError, ["index_node", "select_last_index"]),
    (lambda: _model("ArgMax", [4], x_type=TensorProto.BOOL),
     kiln.UnsupportedError, ["index_node", "bool"]),
])
def test_bad_input_is_a_named_error(model, error, fragments):
    with pytest.raises(error) as info:
        kiln.build_onnx(model().SerializeToString())
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


# ---- PyTorch modules exported with dynamo=True -------------------------------------------------

def _export(module: torch.nn.Module, args: tuple) -> onnx.ModelProto:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, dynamo=True, verbose=False)
    return program.model_proto


def _run_exported(module, args, expected_ops):
    model = _export(module, args)
    ops = {n.op_type for n in model.graph.node}
    assert expected_ops <= ops, f"exported ops {sorted(ops)}"
    feeds = {inp.name: a.numpy() for inp, a in zip(model.graph.input, args)}
    got = run_kiln(model.SerializeToString(), feeds)
    with torch.no_grad():
        want = module(*args)
    want = want if isinstance(want, tuple) else (want,)
    return list(got.values()), [w.numpy() for w in want]


class RobertaPositionIds(torch.nn.Module):
    """fairseq/HF create_position_ids_from_input_ids: positions count non-padding tokens."""

    def __init__(self, padding_idx: int = 1):
        super().__init__()
        self.padding_idx = padding_idx

    def forward(self, input_ids):
        mask = input_ids.ne(self.padding_idx).int()
        incremental = torch.cumsum(mask, dim=1).type_as(mask) * mask
        return incremental.long() + self.padding_idx


def test_torch_roberta_position_ids():
    ids = torch.randint(2, 100, (3, 16), generator=torch.Generator().manual_seed(0))
    ids[0, 10:] = 1  # right padding
    ids[2, :4] = 1   # left padding
    got, want = _run_exported(RobertaPositionIds(), (ids,), {"CumSum"})
    assert got[0].dtype == np.int64
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0][0, 9] == 11 and got[0][0, 10] == 1


class FloatCumsum(torch.nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=1) + torch.cumsum(x.flip(0), dim=0)


def test_torch_float_cumsum():
    x = torch.randn(5, 300, generator=torch.Generator().manual_seed(1))
    got, want = _run_exported(FloatCumsum(), (x,), {"CumSum"})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.weight = torch.nn.Parameter(torch.randn(10, 32, generator=g))

    def forward(self, x):
        logits = x @ self.weight.t()
        return logits.argmax(dim=-1), logits.argmin(dim=1, keepdim=True)


def test_torch_argmax_argmin_classifier():
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    got, want = _run_exported(Classifier(), (x,), {"ArgMax", "ArgMin"})
    for g, w in zip(got, want):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w)


class Sampler(torch.nn.Module):
    """Top-k logits of an LLM head, and the smallest entries along a middle axis."""

    def forward(self, logits, scores):
        values, indices = torch.topk(logits, k=8, dim=-1)
        low_values, low_indices = torch.topk(scores, k=3, dim=1, largest=False)
        return values, indices, low_values, low_indices


def test_torch_topk_sampler():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5000, generator=g)
    scores = torch.randn(3, 20, 4, generator=g)
    got, want = _run_exported(Sampler(), (logits, scores), {"TopK"})
    for g_out, w_out in zip(got, want):
        assert g_out.dtype == w_out.dtype
        np.testing.assert_array_equal(g_out, w_out)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("dtype,elem", [(np.float32, TensorProto.FLOAT), (np.int32, TensorProto.INT32)])
def test_cumprod_matches_numpy_products(exclusive, reverse, dtype, elem):
    # CumProd (opset 26; CPU only so far): CumSum's attributes with products; exclusive starts from 1.
    rng = np.random.default_rng(9)
    x = (rng.uniform(0.5, 1.5, (3, 6, 4)) if dtype == np.float32 else rng.integers(-3, 4, (3, 6, 4))).astype(dtype)
    model = _model("CumProd", [3, 6, 4], {"exclusive": exclusive, "reverse": reverse},
                   consts=[("axis", np.array(1, dtype=np.int64))], x_type=elem, opset=26)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    work = np.flip(x, 1) if reverse else x
    want = np.cumprod(work.astype(np.float64 if dtype == np.float32 else np.int64), axis=1)
    if exclusive:
        want = np.concatenate([np.ones_like(want[:, :1]), want[:, :-1]], axis=1)
    if reverse:
        want = np.flip(want, 1)
    np.testing.assert_allclose(got, want.astype(dtype), rtol=1e-6)
