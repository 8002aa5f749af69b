"""If, Loop, Scan, sequences and optionals, resolved by the ONNX importer at build time: each
model's CPU engine against onnx.reference.ReferenceEvaluator (ONNX Runtime where the reference
lacks a form: reversed or non-zero-axis Scans, Optional), and the refusals of what only run
time knows (an If on an input, a Loop whose trip count is an input, an oversize loop) name the
node and say why."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln
from kiln_testing import run_ort

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=21):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, feeds, reference="onnx"):
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    names = [o.name for o in model.graph.output]
    if reference == "onnx":
        want = ReferenceEvaluator(model).run(None, feeds)
    else:
        ort_out = run_ort(model, feeds)
        want = [ort_out[n] for n in names]
    for name, expected in zip(names, want):
        np.testing.assert_allclose(got[name], expected, rtol=1e-6, atol=1e-6)
        assert got[name].shape == np.asarray(expected).shape
    return got


def _const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array), name))


def _vi(name, elem=F, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def _if_on(cond_nodes, x_shape=(2, 3)):
    """y = If(cond) then x*2 else x+outer, where cond comes from `cond_nodes` (output 'c')."""
    then_g = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t"])], "then", [], [_vi("t")],
                               [numpy_helper.from_array(np.float32(2), "two")])
    else_g = helper.make_graph([helper.make_node("Add", ["x", "outer"], ["e"])], "else", [], [_vi("e")])
    nodes = cond_nodes + [_const("outer", np.float32(10)),
                          helper.make_node("If", ["c"], ["y"], name="choose", then_branch=then_g, else_branch=else_g)]
    return _model(nodes, [_vi("x", F, list(x_shape))], [_vi("y")])


@pytest.mark.parametrize("value", [True, False])
def test_if_on_a_constant_inlines_the_chosen_branch(value):
    model = _if_on([_const("c", np.array(value))])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    _check(model, {"x": x})


def test_if_on_a_static_shape_is_resolved_by_folding():
    # c = (Size(Shape(x)) == 2): known once x's rank is, as the AffineGrid expansion writes it.
    cond = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Size", ["s"], ["n"]),
            _const("two_i", np.int64(2)), helper.make_node("Equal", ["n", "two_i"], ["c"])]
    model = _if_on(cond)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = _check(model, {"x": x})
    np.testing.assert_array_equal(got["y"], x * 2)


def test_if_on_a_run_time_condition_is_refused_naming_the_node():
    model = _model([helper.make_node("If", ["c"], ["y"], name="choose",
                                     then_branch=helper.make_graph([_const("a", np.float32(1))], "t", [], [_vi("a")]),
                                     else_branch=helper.make_graph([_const("b", np.float32(2))], "e", [], [_vi("b")]))],
                   [_vi("c", TensorProto.BOOL, [])], [_vi("y")])
    with pytest.raises(kiln.KilnError, match=r"node 'choose' \(If\): the condition 'c' is only known at run time"):
        kiln.build_onnx(model, target="cpu")


def _loop_model(trip_node, cond_node, body_nodes, body_outputs, carried_inputs, outputs, extra=()):
    body = helper.make_graph(body_nodes, "body",
                             [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("acc_in")],
                             body_outputs)
    nodes = list(extra) + [trip_node, cond_node,
                           helper.make_node("Loop", ["M", "cond"] + carried_inputs, outputs, name="loop", body=body)]
    return _model(nodes, [_vi("x", F, [3])], [_vi(o) for o in outputs])


def test_loop_with_a_constant_trip_count_unrolls_with_carried_values_and_scan_outputs():
    body = [helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Mul", ["acc_in", "fi"], ["scaled"]),
            helper.make_node("Add", ["scaled", "x"], ["acc_out"]),  # reads x from the outer scope
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan"])]
    model = _loop_model(_const("M", np.int64(4)), _const("cond", np.array(True)), body,
                        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out"), _vi("scan")], ["x"],
                        ["final", "stacked"])
    got = _check(model, {"x": np.array([1, 2, 3], dtype=np.float32)})
    assert got["stacked"].shape == (4, 3)


def test_loop_stops_when_its_build_time_condition_turns_false():
    # cond_out = i < 2: three iterations although M is 10.
    body = [_const("two", np.int64(2)), helper.make_node("Less", ["i", "two"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "x"], ["acc_out"])]
    model = _loop_model(_const("M", np.int64(10)), _const("cond", np.array(True)), body,
                        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out")], ["x"], ["final"])
    got = _check(model, {"x": np.array([1, 2, 3], dtype=np.float32)})
    np.testing.assert_array_equal(got["final"], np.array([4, 8, 12], dtype=np.float32))


def test_nested_if_inside_a_loop_body_resolves_per_iteration():
    inner_then = helper.make_graph([helper.make_node("Add", ["acc_in", "x"], ["a"])], "t", [], [_vi("a")])
    inner_else = helper.make_graph([helper.make_node("Sub", ["acc_in", "x"], ["b"])], "e", [], [_vi("b")])
    body = [_const("one", np.int64(1)), helper.make_node("Less", ["i", "one"], ["first"]),
            helper.make_node("If", ["first"], ["acc_out"], name="inner", then_branch=inner_then, else_branch=inner_else),
            helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    model = _loop_model(_const("M", np.int64(3)), _const("cond", np.array(True)), body,
                        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out")], ["x"], ["final"])
    got = _check(model, {"x": np.array([1, 2, 3], dtype=np.float32)})
    np.testing.assert_array_equal(got["final"], np.zeros(3, dtype=np.float32))  # 2x, then x, then 0


def test_loop_with_a_run_time_trip_count_is_refused():
    body = [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["acc_in"], ["acc_out"])]
    b = helper.make_graph(body, "body", [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("acc_in")],
                          [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out")])
    model = _model([_const("cond", np.array(True)), helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="loop", body=b)],
                   [_vi("M", TensorProto.INT64, []), _vi("x", F, [3])], [_vi("y")])
    with pytest.raises(kiln.KilnError, match=r"node 'loop' \(Loop\): the trip count M 'M' is only known at run time"):
        kiln.build_onnx(model, target="cpu")


def test_oversize_loop_is_refused():
    body = [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["acc_in"], ["acc_out"])]
    model = _loop_model(_const("M", np.int64(100000)), _const("cond", np.array(True)), body,
                        [_vi("cond_out", TensorProto.BOOL, []), _vi("acc_out")], ["x"], ["final"])
    with pytest.raises(kiln.KilnError, match=r"node 'loop' \(Loop\): the trip count is 100000; .* 4096 iterations"):
        kiln.build_onnx(model, target="cpu")


@pytest.mark.parametrize("in_dir,out_dir,in_axis,out_axis", [(0, 0, 0, 0), (1, 0, 1, 0), (0, 1, 1, 1), (1, 1, -1, -1)])
def test_scan_unrolls_over_its_static_axis(in_dir, out_dir, in_axis, out_axis):
    body = helper.make_graph([helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
                              helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])], "body",
                             [_vi("s_in"), _vi("x_t")], [_vi("s_out"), _vi("y_t")])
    node = helper.make_node("Scan", ["s0", "x"], ["s", "y"], name="scan", body=body, num_scan_inputs=1,
                            scan_input_directions=[in_dir], scan_output_directions=[out_dir],
                            scan_input_axes=[in_axis], scan_output_axes=[out_axis])
    model = _model([node], [_vi("s0", F, [2]), _vi("x", F, [2, 4] if in_axis else [4, 2])], [_vi("s"), _vi("y")])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4) if in_axis else (4, 2)).astype(np.float32)
    _check(model, {"s0": np.array([1, 2], dtype=np.float32), "x": x}, reference="ort")


def test_sequence_ops_become_static_lists():
    nodes = [helper.make_node("SplitToSequence", ["x"], ["seq"], axis=1),
             _const("pos", np.int64(-1)), helper.make_node("SequenceErase", ["seq", "pos"], ["seq2"]),
             helper.make_node("SequenceInsert", ["seq2", "x"], ["seq3"]),
             helper.make_node("SequenceLength", ["seq3"], ["n"]),
             _const("at", np.int64(1)), helper.make_node("SequenceAt", ["seq3", "at"], ["second"]),
             helper.make_node("SequenceConstruct", ["second", "second"], ["pair"]),
             helper.make_node("ConcatFromSequence", ["pair"], ["stacked"], axis=0, new_axis=1),
             helper.make_node("ConcatFromSequence", ["seq3"], ["joined"], axis=1)]
    model = _model(nodes, [_vi("x", F, [2, 3])],
                   [_vi("n", TensorProto.INT64), _vi("second"), _vi("stacked"), _vi("joined")])
    _check(model, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})


def test_split_to_sequence_with_sizes_and_without_keepdims():
    nodes = [_const("sizes", np.array([1, 2], dtype=np.int64)),
             helper.make_node("SplitToSequence", ["x", "sizes"], ["a"], axis=1),
             helper.make_node("ConcatFromSequence", ["a"], ["ya"], axis=1),
             helper.make_node("SplitToSequence", ["x"], ["b"], axis=0, keepdims=0),
             helper.make_node("ConcatFromSequence", ["b"], ["yb"], axis=0)]
    model = _model(nodes, [_vi("x", F, [2, 3])], [_vi("ya"), _vi("yb")])
    _check(model, {"x": np.arange(6, dtype=np.float32).reshape(2, 3)})


def test_a_sequence_graph_output_is_refused():
    model = _model([helper.make_node("SplitToSequence", ["x"], ["seq"], axis=1)], [_vi("x", F, [2, 3])],
                   [helper.make_tensor_sequence_value_info("seq", F, None)])
    with pytest.raises(kiln.KilnError, match=r"graph output 'seq' is a sequence; kiln engines have tensor outputs only"):
        kiln.build_onnx(model, target="cpu")


def test_optional_ops_on_static_values():
    nodes = [helper.make_node("Optional", ["x"], ["opt"]), helper.make_node("OptionalGetElement", ["opt"], ["y"]),
             helper.make_node("OptionalHasElement", ["opt"], ["has"]),
             helper.make_node("OptionalHasElement", [""], ["none"])]
    model = _model(nodes, [_vi("x", F, [2])], [_vi("y"), _vi("has", TensorProto.BOOL), _vi("none", TensorProto.BOOL)])
    got = _check(model, {"x": np.array([1, 2], dtype=np.float32)}, reference="ort")
    assert bool(got["has"]) and not bool(got["none"])
