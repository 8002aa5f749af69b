"""The ops of recent opsets that LLM and state-space exports use, on the CPU (no CUDA kernels):
RotaryEmbedding (23), TensorScatter (24), BitCast (26), LinearAttention and CausalConvWithState
(27), SwiGLU (28), each against ONNX's reference evaluator over more shapes, attribute values,
optional inputs/outputs and dtypes than the official backend cases. Bad nodes are errors naming the
node; a CUDA build refuses the layers by name."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import kiln

OPSETS = {"RotaryEmbedding": 23, "TensorScatter": 24, "BitCast": 26, "LinearAttention": 27,
          "CausalConvWithState": 27, "SwiGLU": 28}


def _model(op, inputs, n_outputs=1, name="seq_node", **attrs):
    """One `op` node over graph inputs `inputs` (name -> array, None for an absent one)."""
    names = [k if v is not None else "" for k, v in inputs.items()]
    while names and names[-1] == "":
        names.pop()
    outputs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, name=name, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in inputs.items() if v is not None]
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSETS[op])])


def _feeds(inputs):
    return {k: v for k, v in inputs.items() if v is not None}


def _check(op, inputs, n_outputs=1, rtol=1e-5, atol=1e-6, **attrs):
    model = _model(op, inputs, n_outputs, **attrs)
    want = ReferenceEvaluator(model).run(None, _feeds(inputs))
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(_feeds(inputs))
    for i, w in enumerate(want):
        g = got[f"y{i}"]
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, g.shape, w.dtype, w.shape)
        if np.issubdtype(w.dtype, np.floating) and w.dtype == np.float16:
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=4e-3, atol=2e-3)
        elif np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, w)


def _rand(rng, shape, dtype=np.float32, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ---- RotaryEmbedding -----------------------------------------------------------------------------

@pytest.mark.parametrize("rank,interleaved,rotary_dim,with_positions,dtype", [
    (rank, inter, rot, pos, dt)
    for rank, inter, rot, pos in itertools.product((3, 4), (0, 1), (0, 4), (True, False))
    for dt in ((np.float32, np.float16) if rank == 4 and not inter else (np.float32,))])
def test_rotary_embedding_matches_the_reference(rank, interleaved, rotary_dim, with_positions, dtype):
    rng = np.random.default_rng(rank * 100 + interleaved * 10 + rotary_dim + with_positions)
    batch, seq, heads, head_size, max_pos = 2, 5, 3, 8, 11
    x = _rand(rng, (batch, heads, seq, head_size) if rank == 4 else (batch, seq, heads * head_size), dtype)
    half = (rotary_dim or head_size) // 2
    angles = rng.uniform(-3, 3, (max_pos, half) if with_positions else (batch, seq, half))
    positions = rng.integers(0, max_pos, (batch, seq)).astype(np.int64) if with_positions else None
    inputs = {"x": x, "cos": np.cos(angles).astype(dtype), "sin": np.sin(angles).astype(dtype),
              "position_ids": positions}
    attrs = {"interleaved": interleaved}
    if rotary_dim:
        attrs["rotary_embedding_dim"] = rotary_dim
    if rank == 3:
        attrs["num_heads"] = heads
    _check("RotaryEmbedding", inputs, **attrs)


def test_rotary_embedding_position_outside_the_cache_is_an_error_naming_the_node():
    x = np.zeros((1, 2, 3, 4), np.float32)
    cache = np.ones((3, 2), np.float32)
    inputs = {"x": x, "cos": cache, "sin": cache, "position_ids": np.array([[0, 1, 3]], np.int64)}
    engine = kiln.Engine(kiln.build_onnx(_model("RotaryEmbedding", inputs), target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"seq_node.*position_ids\) holds 3 at \[0, 2\]"):
        engine.run(_feeds(inputs))


@pytest.mark.parametrize("attrs,shape,match", [
    ({}, (1, 3, 8), r"needs attribute 'num_heads' > 0"),
    ({"num_heads": 3}, (1, 3, 8), r"hidden size 8 is not a multiple of num_heads 3"),
    ({"rotary_embedding_dim": 10}, (1, 2, 3, 8), r"'rotary_embedding_dim' 10 exceeds the head size 8"),
    ({"num_heads": 4}, (1, 2, 3, 8), r"'num_heads' is 4 but input 0"),
])
def test_rotary_embedding_bad_attributes_are_errors_naming_the_node(attrs, shape, match):
    cache = np.ones((3, 4), np.float32)
    inputs = {"x": np.zeros(shape, np.float32), "cos": cache, "sin": cache,
              "position_ids": np.zeros(shape[:1] + (3,), np.int64)}
    with pytest.raises(kiln.KilnError, match="seq_node.*" + match):
        kiln.build_onnx(_model("RotaryEmbedding", inputs, **attrs), target="cpu")


# ---- LinearAttention -----------------------------------------------------------------------------

LINEAR_ATTENTION_CASES = [
    # rule, q heads, kv heads, tokens, past, decay per key, beta per head, dtype, scale
    ("linear", 2, 2, 4, False, None, None, np.float32, 0.0),
    ("linear", 4, 2, 1, True, None, None, np.float32, 0.5),
    ("gated", 2, 1, 5, True, True, None, np.float32, 0.0),
    ("gated", 3, 3, 3, False, False, None, np.float32, 0.0),
    ("delta", 2, 2, 6, True, None, True, np.float32, 0.0),
    ("delta", 4, 1, 2, False, None, False, np.float32, 0.0),
    ("gated_delta", 2, 2, 7, True, False, True, np.float32, 0.0),
    ("gated_delta", 6, 2, 3, True, True, False, np.float32, 2.0),
    ("gated_delta", 2, 2, 4, True, False, True, np.float16, 0.0),
]


@pytest.mark.parametrize("rule,hq,hkv,tokens,past,decay_per_key,beta_per_head,dtype,scale",
                         LINEAR_ATTENTION_CASES)
def test_linear_attention_matches_the_reference(rule, hq, hkv, tokens, past, decay_per_key,
                                                beta_per_head, dtype, scale):
    rng = np.random.default_rng(hq * 31 + hkv * 7 + tokens)
    batch, dk, dv = 2, 4, 3
    key = _rand(rng, (batch, tokens, hkv, dk))
    key /= np.linalg.norm(key, axis=-1, keepdims=True)  # delta rules expect L2-normalised keys
    inputs = {
        "query": _rand(rng, (batch, tokens, hq * dk), dtype),
        "key": key.reshape(batch, tokens, hkv * dk).astype(dtype),
        "value": _rand(rng, (batch, tokens, hkv * dv), dtype),
        "past_state": _rand(rng, (batch, hkv, dk, dv), dtype, 0.5) if past else None,
        "decay": None if decay_per_key is None else
        (-rng.uniform(0.01, 0.5, (batch, tokens, hkv * dk if decay_per_key else hkv))).astype(dtype),
        "beta": None if beta_per_head is None else
        rng.uniform(0.1, 0.9, (batch, tokens, hkv if beta_per_head else 1)).astype(dtype),
    }
    attrs = {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule}
    if scale:
        attrs["scale"] = scale
    _check("LinearAttention", inputs, n_outputs=2, rtol=1e-5, atol=1e-5, **attrs)


def test_linear_attention_float32_state_with_float16_activations():
    # The state dtype S may differ from T: present_state keeps past_state's dtype.
    rng = np.random.default_rng(5)
    inputs = {"query": _rand(rng, (2, 3, 8), np.float16), "key": _rand(rng, (2, 3, 8), np.float16, 0.5),
              "value": _rand(rng, (2, 3, 6), np.float16), "past_state": _rand(rng, (2, 2, 4, 3)),
              "decay": (-rng.uniform(0.01, 0.5, (2, 3, 2))).astype(np.float16), "beta": None}
    _check("LinearAttention", inputs, n_outputs=2, q_num_heads=2, kv_num_heads=2, update_rule="gated")


def test_linear_attention_without_present_state_output():
    rng = np.random.default_rng(3)
    inputs = {"query": _rand(rng, (1, 3, 8)), "key": _rand(rng, (1, 3, 8)), "value": _rand(rng, (1, 3, 4))}
    _check("LinearAttention", inputs, n_outputs=1, q_num_heads=2, kv_num_heads=2, update_rule="linear")


@pytest.mark.parametrize("attrs,drop,match", [
    ({"update_rule": "gated"}, (), r"update_rule 'gated' needs input 4 \(decay\)"),
    ({"update_rule": "linear"}, ("decay_input",), r"update_rule 'linear' takes no input 4 \(decay\)"),
    ({"update_rule": "delta", "q_num_heads": 3}, ("beta_input",), r"must be a positive multiple"),
    ({"update_rule": "rnn"}, (), r"'update_rule' must be linear, gated, delta or gated_delta, got 'rnn'"),
])
def test_linear_attention_bad_nodes_are_errors_naming_the_node(attrs, drop, match):
    inputs = {"query": np.zeros((1, 2, 8), np.float32), "key": np.zeros((1, 2, 8), np.float32),
              "value": np.zeros((1, 2, 4), np.float32), "past_state": None,
              "decay": np.zeros((1, 2, 2), np.float32) if "decay_input" in drop else None,
              "beta": np.zeros((1, 2, 1), np.float32) if "beta_input" in drop else None}
    attrs = {"q_num_heads": 2, "kv_num_heads": 2, **attrs}
    with pytest.raises(kiln.KilnError, match="seq_node.*" + match):
        kiln.build_onnx(_model("LinearAttention", inputs, n_outputs=2, **attrs), target="cpu")


# ---- CausalConvWithState -------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,length,bias,past,activation,dtype", [
    (k, L, b, p, a, np.float32) for k, L, b, p, a in itertools.product(
        (1, 2, 4), (1, 3, 9), (False, True), (False, True), ("none", "silu"))] + [
    (4, 6, True, True, "swish", np.float16), (3, 1, False, True, "none", np.float16)])
def test_causal_conv_with_state_matches_the_reference(kernel, length, bias, past, activation, dtype):
    rng = np.random.default_rng(kernel * 100 + length)
    batch, channels = 2, 5
    inputs = {"input": _rand(rng, (batch, channels, length), dtype),
              "weight": _rand(rng, (channels, 1, kernel), dtype),
              "bias": _rand(rng, (channels,), dtype) if bias else None,
              "past_state": _rand(rng, (batch, channels, kernel - 1), dtype) if past else None}
    _check("CausalConvWithState", inputs, n_outputs=2, activation=activation)


def test_causal_conv_with_state_bad_past_state_is_an_error_naming_the_node():
    inputs = {"input": np.zeros((1, 2, 5), np.float32), "weight": np.zeros((2, 1, 3), np.float32),
              "bias": None, "past_state": np.zeros((1, 2, 3), np.float32)}
    with pytest.raises(kiln.KilnError, match=r"seq_node.*input 3 \(past_state\) must be \[batch, "
                                             r"channels, kernel_size - 1\] = \[1, 2, 2\], got \[1, 2, 3\]"):
        kiln.build_onnx(_model("CausalConvWithState", inputs, n_outputs=2), target="cpu")


# ---- SwiGLU --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,alpha,dtype", [
    ((7,), None, np.float32), ((2, 3, 16), 1.702, np.float32), ((4, 33), 0.5, np.float16),
    ((3, 5), 2.0, np.float64), ((0, 4), None, np.float32)])
def test_swiglu_matches_the_reference(shape, alpha, dtype):
    rng = np.random.default_rng(len(shape))
    inputs = {"a": _rand(rng, shape, dtype, 3.0), "b": _rand(rng, shape, dtype)}
    attrs = {} if alpha is None else {"alpha": alpha}
    _check("SwiGLU", inputs, rtol=1e-12 if dtype == np.float64 else 1e-5, **attrs)


def test_swiglu_does_not_broadcast():
    inputs = {"a": np.zeros((2, 3), np.float32), "b": np.zeros((1, 3), np.float32)}
    with pytest.raises(kiln.KilnError, match=r"seq_node.*must have the same shape \(SwiGLU does not broadcast\)"):
        kiln.build_onnx(_model("SwiGLU", inputs), target="cpu")


# ---- TensorScatter -------------------------------------------------------------------------------

@pytest.mark.parametrize("axis,mode,indexed,dtype", [
    (a, m, i, d) for a, m, i in itertools.product((-2, 1, 2, -1), ("linear", "circular"), (True, False))
    for d in ((np.float32, np.int64, np.float16, np.bool_) if a == -2 else (np.float32,))])
def test_tensor_scatter_matches_the_reference(axis, mode, indexed, dtype):
    rng = np.random.default_rng(abs(axis) * 10 + indexed)
    cache_shape = [3, 4, 6, 5]
    update_shape = list(cache_shape)
    seq_axis = axis % 4
    update_shape[seq_axis] = 3
    capacity = cache_shape[seq_axis]
    if mode == "linear":
        starts = rng.integers(0, capacity - 3 + 1, 3)
    else:
        starts = rng.integers(0, capacity * 2, 3)
    inputs = {"past": _rand(rng, cache_shape).astype(dtype) if dtype != np.bool_ else rng.random(cache_shape) > 0.5,
              "update": _rand(rng, update_shape).astype(dtype) if dtype != np.bool_ else rng.random(update_shape) > 0.5,
              "write_indices": starts.astype(np.int64) if indexed else None}
    _check("TensorScatter", inputs, axis=axis, mode=mode)


def test_tensor_scatter_linear_write_past_the_end_is_an_error_naming_the_node():
    inputs = {"past": np.zeros((2, 4, 3), np.float32), "update": np.ones((2, 2, 3), np.float32),
              "write_indices": np.array([0, 3], np.int64)}
    engine = kiln.Engine(kiln.build_onnx(_model("TensorScatter", inputs), target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"seq_node.*holds 3 for batch row 1: mode 'linear'"):
        engine.run(_feeds(inputs))


# ---- BitCast -------------------------------------------------------------------------------------

@pytest.mark.parametrize("source,target", [
    (np.float32, TensorProto.INT32), (np.int32, TensorProto.FLOAT), (np.uint32, TensorProto.INT32),
    (np.float64, TensorProto.INT64), (np.int64, TensorProto.UINT64), (np.float16, TensorProto.INT16),
    (np.uint16, TensorProto.FLOAT16), (np.int8, TensorProto.UINT8), (np.bool_, TensorProto.UINT8),
    (np.uint8, TensorProto.INT8)])
def test_bitcast_matches_the_reference(source, target):
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 256, 48, dtype=np.uint8)
    if source == np.bool_:
        x = bits[:12] % 2 == 1
    else:
        x = bits.view(source)
        if np.issubdtype(source, np.floating):
            x = np.nan_to_num(x, nan=1.5, posinf=2.5, neginf=-2.5)  # NaN payloads compare unequal
    x = x.reshape(2, -1)
    model = _model("BitCast", {"x": x}, to=target)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y0"]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def test_bitcast_to_another_width_is_an_error_naming_the_node():
    model = _model("BitCast", {"x": np.zeros(3, np.float32)}, to=TensorProto.FLOAT16)
    with pytest.raises(kiln.KilnError, match=r"seq_node.*must have the width of input 0 \(float32, 32 bits\)"):
        kiln.build_onnx(model, target="cpu")


# ---- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,inputs,attrs", [
    ("RotaryEmbedding", {"x": np.zeros((1, 2, 3, 4), np.float32), "cos": np.ones((3, 2), np.float32),
                         "sin": np.ones((3, 2), np.float32), "position_ids": np.zeros((1, 3), np.int64)}, {}),
    ("LinearAttention", {"q": np.zeros((1, 2, 4), np.float32), "k": np.zeros((1, 2, 4), np.float32),
                         "v": np.zeros((1, 2, 4), np.float32)},
     {"q_num_heads": 1, "kv_num_heads": 1, "update_rule": "linear"}),
    ("CausalConvWithState", {"x": np.zeros((1, 2, 3), np.float32), "w": np.zeros((2, 1, 3), np.float32)}, {}),
    ("SwiGLU", {"a": np.zeros(4, np.float32), "b": np.zeros(4, np.float32)}, {}),
    ("TensorScatter", {"p": np.zeros((1, 4, 2), np.float32), "u": np.zeros((1, 1, 2), np.float32)}, {}),
    ("BitCast", {"x": np.zeros(4, np.float32)}, {"to": TensorProto.INT32}),
])
def test_cuda_build_refuses_the_layer_by_name(op, inputs, attrs):
    model = _model(op, inputs, **attrs)
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)
    except kiln.KilnError as error:
        assert f"host layers are not allowed (allow_host_layers):\n  layer 'seq_node' (op '{op}'): the cuda backend has no kernel" in str(error)
        return
    with pytest.raises(kiln.KilnError, match="built without CUDA"):
        kiln.Engine(engine)
    pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
