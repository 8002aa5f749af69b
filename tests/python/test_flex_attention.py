"""FlexAttention (ai.onnx.preview, opset 1), which kiln expands at import into MatMul, the inlined
score_mod/prob_mod bodies, Softmax and Casts: against ONNX's reference evaluator over more shapes
(GQA/MQA groups, L != S, Ev != E), dtypes, scales, softmax precisions and modifier bodies (index
arithmetic from Shape/Range, values captured from the outer graph, dynamic batch and lengths) than
the official backend cases, and the named errors for what kiln refuses."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln

PREVIEW = "ai.onnx.preview"
FLOAT = TensorProto.FLOAT


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def _body(name, nodes, initializers=(), dtype=FLOAT, inp="s", out="s_out"):
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(inp, dtype, None)],
                             [helper.make_tensor_value_info(out, dtype, None)], list(initializers))


def _index_nodes():
    """q_idx (L, 1) and k_idx (1, S) as int64, from the shape of the body's input."""
    return [
        helper.make_node("Shape", ["s"], ["shape"]),
        helper.make_node("Gather", ["shape", "two"], ["L"], axis=0),
        helper.make_node("Gather", ["shape", "three"], ["S"], axis=0),
        helper.make_node("Range", ["zero", "L", "one"], ["q_range"]),
        helper.make_node("Range", ["zero", "S", "one"], ["k_range"]),
        helper.make_node("Reshape", ["q_range", "col"], ["q_idx"]),
        helper.make_node("Reshape", ["k_range", "row"], ["k_idx"]),
    ], [_i64("zero", 0), _i64("one", 1), _i64("two", 2), _i64("three", 3), _i64("col", [-1, 1]),
        _i64("row", [1, -1])]


def causal(dtype=FLOAT):
    nodes, inits = _index_nodes()
    nodes += [helper.make_node("GreaterOrEqual", ["q_idx", "k_idx"], ["keep"]),
              helper.make_node("Where", ["keep", "s", "neg_inf"], ["s_out"])]
    inits.append(helper.make_tensor("neg_inf", dtype, [], [float("-inf")]))
    return _body("causal", nodes, inits, dtype)


def sliding_window(window):
    """Causal with a window: keeps q_idx - window < k_idx <= q_idx."""
    nodes, inits = _index_nodes()
    nodes += [helper.make_node("Sub", ["q_idx", "k_idx"], ["distance"]),
              helper.make_node("GreaterOrEqual", ["distance", "zero"], ["past"]),
              helper.make_node("Less", ["distance", "window"], ["near"]),
              helper.make_node("And", ["past", "near"], ["keep"]),
              helper.make_node("Where", ["keep", "s", "neg_big"], ["s_out"])]
    inits += [_i64("window", window), helper.make_tensor("neg_big", FLOAT, [], [-1e9])]
    return _body("window", nodes, inits)


def soft_cap(cap, dtype=FLOAT):
    nodes = [helper.make_node("Div", ["s", "cap"], ["d"]), helper.make_node("Tanh", ["d"], ["t"]),
             helper.make_node("Mul", ["t", "cap"], ["s_out"])]
    return _body("soft_cap", nodes, [helper.make_tensor("cap", dtype, [], [cap])], dtype)


def alibi_from_outer(dtype=FLOAT):
    """scores + slopes[h] * (k_idx - q_idx), `slopes` (1, H, 1, 1) read from the outer graph."""
    nodes, inits = _index_nodes()
    nodes += [helper.make_node("Sub", ["k_idx", "q_idx"], ["rel"]),
              helper.make_node("Cast", ["rel"], ["rel_f"], to=dtype),
              helper.make_node("Mul", ["slopes", "rel_f"], ["bias"]),
              helper.make_node("Add", ["s", "bias"], ["s_out"])]
    return _body("alibi", nodes, inits, dtype)


def prob_scale(value, dtype=FLOAT):
    return _body("scale", [helper.make_node("Mul", ["p", "half"], ["p_out"])],
                 [helper.make_tensor("half", dtype, [], [value])], dtype, inp="p", out="p_out")


def _model(q_shape, k_shape, v_shape, np_dtype, *, outer=None, node_name="flex", opsets=None, **attrs):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["Y"], name=node_name, domain=PREVIEW,
                            **attrs)
    inputs = [helper.make_tensor_value_info(n, elem, s) for n, s in zip("QKV", (q_shape, k_shape, v_shape))]
    initializers = [numpy_helper.from_array(v, k) for k, v in (outer or {}).items()]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", elem, None)],
                              initializers)
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 26),
                                                              helper.make_opsetid(PREVIEW, 1)])
    model.ir_version = 11
    return model


def _feeds(rng, shapes, np_dtype):
    return {n: rng.standard_normal(s).astype(np_dtype) for n, s in zip("QKV", shapes)}


def _check(shapes, np_dtype=np.float32, rtol=1e-5, atol=1e-6, outer=None, seed=0, **attrs):
    model = _model(*shapes, np_dtype, outer=outer, **attrs)
    feeds = _feeds(np.random.default_rng(seed), shapes, np_dtype)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["Y"]
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    return got


# (B, Hq, Hkv, L, S, E, Ev): equal heads, GQA groups of 2 and 3, MQA, L != S, Ev != E, one token.
SHAPES = [(1, 2, 2, 3, 3, 4, 4), (2, 4, 2, 5, 7, 8, 8), (3, 6, 2, 4, 9, 16, 5), (2, 8, 1, 6, 6, 8, 12),
          (1, 3, 3, 1, 11, 32, 32)]


def _shapes(b, hq, hkv, l, s, e, ev):
    return (b, hq, l, e), (b, hkv, s, e), (b, hkv, s, ev)


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("np_dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_plain_attention_matches_the_reference(dims, np_dtype, tol):
    _check(_shapes(*dims), np_dtype, rtol=tol, atol=tol)


@pytest.mark.parametrize("dims", SHAPES[1:3])
def test_float16_computes_softmax_in_float32_like_the_reference(dims):
    _check(_shapes(*dims), np.float16, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("precision, np_dtype, tol", [(11, np.float32, 1e-5), (1, np.float64, 1e-5),
                                                      (10, np.float32, 5e-3), (16, np.float32, 3e-2),
                                                      (1, np.float16, 2e-3)])
def test_softmax_precision_sets_the_softmax_type(precision, np_dtype, tol):
    _check(_shapes(*SHAPES[1]), np_dtype, rtol=tol, atol=tol, softmax_precision=precision)


@pytest.mark.parametrize("scale", [0.1, 1.0, 2.5])
def test_explicit_scale(scale):
    _check(_shapes(*SHAPES[2]), scale=scale)


@pytest.mark.parametrize("dims", [SHAPES[1], SHAPES[3], (1, 2, 2, 7, 4, 8, 8)])
def test_causal_score_mod_from_shape_and_range(dims):
    _check(_shapes(*dims), score_mod=causal())


def test_sliding_window_and_soft_cap_and_prob_mod_together():
    got = _check(_shapes(*SHAPES[2]), score_mod=sliding_window(3), prob_mod=prob_scale(0.5))
    assert np.isfinite(got).all()
    _check(_shapes(*SHAPES[2]), score_mod=soft_cap(5.0), scale=3.0)


def test_score_mod_reads_a_value_of_the_outer_graph():
    # ONNX's reference evaluator does not pass outer values into FlexAttention's bodies: numpy here.
    slopes = (2.0 ** -np.arange(1, 7, dtype=np.float32)).reshape(1, 6, 1, 1)
    shapes = _shapes(*SHAPES[2])
    model = _model(*shapes, np.float32, outer={"slopes": slopes}, score_mod=alibi_from_outer())
    feeds = _feeds(np.random.default_rng(5), shapes, np.float32)
    q, k, v = (feeds[n].astype(np.float64) for n in "QKV")
    k, v = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])
    positions = np.arange(scores.shape[-1])[None, :] - np.arange(scores.shape[-2])[:, None]
    scores = scores + slopes * positions
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    want = (probs / probs.sum(-1, keepdims=True)) @ v
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["Y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_double_modifiers_run_in_double():
    _check(_shapes(*SHAPES[1]), np.float64, rtol=1e-12, atol=1e-12,
           score_mod=soft_cap(4.0, TensorProto.DOUBLE), prob_mod=prob_scale(0.25, TensorProto.DOUBLE))


def test_float16_modifiers_see_float32_scores():
    _check(_shapes(*SHAPES[1]), np.float16, rtol=2e-3, atol=2e-3, score_mod=causal(), prob_mod=prob_scale(2.0))


def test_dynamic_batch_and_lengths():
    model = _model(("B", 4, "L", 8), ("B", 2, "S", 8), ("B", 2, "S", 6), np.float32, score_mod=causal())
    profiles = {"Q": ([1, 4, 1, 8], [2, 4, 8, 8], [3, 4, 16, 8]), "K": ([1, 2, 1, 8], [2, 2, 8, 8], [3, 2, 16, 8]),
                "V": ([1, 2, 1, 6], [2, 2, 8, 6], [3, 2, 16, 6])}
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString(), profiles=profiles))
    reference = ReferenceEvaluator(model)
    rng = np.random.default_rng(3)
    for b, l, s in ((1, 1, 1), (3, 5, 9), (2, 16, 16)):
        feeds = _feeds(rng, ((b, 4, l, 8), (b, 2, s, 8), (b, 2, s, 6)), np.float32)
        np.testing.assert_allclose(engine.run(feeds)["Y"], reference.run(None, feeds)[0], rtol=1e-5, atol=1e-6)


# ---- refusals -----------------------------------------------------------------------------------

def _build(model):
    return kiln.build_onnx(model, target="cpu")


def test_rank_3_inputs_are_refused_by_name():
    with pytest.raises(kiln.KilnError, match=r"node 'flex' \(FlexAttention\): Q 'Q' has rank 3; .*rank-4"):
        _build(_model((2, 3, 4), (2, 3, 4), (2, 3, 4), np.float32))


def test_head_counts_that_do_not_divide_are_refused():
    with pytest.raises(kiln.KilnError, match=r"flex.*q_num_heads 3 must be a multiple of kv_num_heads 2"):
        _build(_model((1, 3, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32))


def test_mismatched_head_sizes_are_refused():
    with pytest.raises(kiln.KilnError, match=r"flex.*Q and K must share their head size"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 5), (1, 2, 2, 4), np.float32))


def test_integer_softmax_precision_is_refused():
    with pytest.raises(kiln.KilnError, match=r"flex.*softmax_precision 7 is not supported"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32, softmax_precision=7))


def test_unknown_attribute_is_refused_by_name():
    with pytest.raises(kiln.KilnError, match=r"flex.*attribute 'mask_mod' is not supported"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32, mask_mod=causal()))


def test_modifier_with_two_inputs_is_refused():
    two = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "two",
                            [helper.make_tensor_value_info(n, FLOAT, None) for n in "ab"],
                            [helper.make_tensor_value_info("c", FLOAT, None)])
    with pytest.raises(kiln.KilnError, match=r"flex.*score_mod graph declares 2 inputs and 1 outputs"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32, score_mod=two))


def test_unsupported_node_inside_a_modifier_is_named():
    body = _body("bad", [helper.make_node("NoSuchOp", ["s"], ["s_out"])])
    with pytest.raises(kiln.KilnError, match=r"node 'flex/score_mod/NoSuchOp_0': op 'NoSuchOp'.*not supported"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32, score_mod=body))


def test_integer_inputs_are_refused():
    with pytest.raises(kiln.KilnError, match=r"flex.*Q 'Q' is int32; kiln runs FlexAttention on float16"):
        _build(_model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.int32))


def test_other_preview_ops_stay_refused():
    model = _model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32)
    model.graph.node[0].op_type = "FlexAttention2"
    with pytest.raises(kiln.KilnError, match=r"op 'FlexAttention2' \(domain 'ai.onnx.preview', opset 1\) "
                                             r"is not supported by kiln"):
        _build(model)


def test_a_later_preview_opset_is_refused():
    model = _model((1, 2, 2, 4), (1, 2, 2, 4), (1, 2, 2, 4), np.float32,
                   opsets=[helper.make_opsetid("", 26), helper.make_opsetid(PREVIEW, 2)])
    with pytest.raises(kiln.KilnError, match=r"flex.*ai.onnx.preview opset 2 is not supported"):
        _build(model)
