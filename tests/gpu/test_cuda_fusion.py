"""Generated kernels on CUDA: models whose pointwise ops and reductions the builder groups into
FusedGroup layers for the cuda target, each run by a kernel generated for it at build time (GELU as
exported by torch, bias + residual adds, the scale + mask before Softmax, broadcasting chains,
residual LayerNorms, decomposed LayerNorm and RMSNorm, every Reduce op over inner and middle axes,
pooling, squeeze-excitation gates, comparisons and Where, NaN and infinity, a dynamic batch) must
compute what the CPU engine (ungrouped, the reference) computes. Which groups form is checked by the
C++ tests (tests/unit/fusion_grouping_test.cpp); here the generated code runs.

Tolerances as in test_cuda_conformance.py: float32 rtol 1e-4 / atol 1e-5; float16 tensors or
precision="fp16" engines max |cuda - cpu| <= 2e-2 * max(1, max |cpu|)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import kiln
from engine_layers import engine_layers

OPSET = 20


def _tensor_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class _Model:
    """Small builder: inputs, scalar/array constants and nodes, all of one float dtype."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.inputs, self.nodes, self.inits, self.feeds = [], [], [], {}
        self.rng = np.random.default_rng(7)
        self._count = 0

    def input(self, name, shape, low=-3.0, high=3.0, feed_shape=None):
        self.inputs.append(helper.make_tensor_value_info(name, _tensor_type(self.dtype), shape))
        self.feeds[name] = self.rng.uniform(low, high, size=feed_shape or shape).astype(self.dtype)
        return name

    def axes(self, values):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def const(self, value, shape=()):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.full(shape, value, dtype=self.dtype), name))
        return name

    def const_array(self, array):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=self.dtype), name))
        return name

    def op(self, op_type, *inputs, **attrs):
        self._count += 1
        out = f"{op_type.lower()}{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def gelu(self, x):
        d = self.op("Div", x, self.const(1.4142135))
        e = self.op("Erf", d)
        a = self.op("Add", e, self.const(1.0))
        m = self.op("Mul", x, a)
        return self.op("Mul", m, self.const(0.5))

    def model(self, outputs) -> bytes:
        outs = [helper.make_tensor_value_info(o, _tensor_type(self.dtype), None) for o in outputs]
        graph = helper.make_graph(self.nodes, "fusion", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        return model.SerializeToString()


def _gelu_model(dtype):
    m = _Model(dtype)
    y = m.gelu(m.input("x", [2, 64, 257]))
    return m, [y]


def _gelu_tanh_powers_model(dtype):
    # GELU as GPT-2 exports it (x ** 3 spelled Pow(x, 3.0)), and a square of a negative-valued
    # input: the generated kernel computes constant squares and cubes as products.
    m = _Model(dtype)
    x = m.input("x", [4, 33, 384], low=-6.0, high=6.0)
    cube = m.op("Mul", m.op("Pow", x, m.const(3.0)), m.const(0.044715))
    inner = m.op("Mul", m.op("Add", x, cube), m.const(0.7978845608))
    gelu = m.op("Mul", m.op("Mul", x, m.const(0.5)), m.op("Add", m.op("Tanh", inner), m.const(1.0)))
    square = m.op("Pow", m.op("Sub", x, m.const(1.0)), m.const(2.0))
    return m, [gelu, square]


def _bias_residual_model(dtype):
    m = _Model(dtype)
    x = m.input("x", [4, 33, 96])
    residual = m.input("residual", [4, 33, 96])
    biased = m.op("Add", x, m.const_array(m.rng.uniform(-1, 1, size=[96])))
    y = m.op("Add", m.gelu(biased), residual)
    return m, [y]


def _attention_mask_model(dtype):
    m = _Model(dtype)
    scores = m.input("scores", [2, 4, 16, 16])
    mask = m.input("mask", [2, 1, 1, 16])
    scaled = m.op("Mul", scores, m.const(0.125))
    masked = m.op("Add", scaled, mask)
    return m, [m.op("Softmax", masked, axis=-1)]


def _broadcast_chain_model(dtype):
    # Inputs of different shapes: the strided (non-dense) kernel path; every fusible op once.
    m = _Model(dtype)
    x = m.input("x", [8, 1, 40])
    y = m.input("y", [5, 40])
    z = m.input("z", [1])
    v = m.op("Relu", m.op("Sub", m.op("Add", x, y), z))
    positive = m.op("Add", m.op("Abs", x), m.const(1.0))
    v = m.op("Mul", v, m.op("Log", positive))
    v = m.op("Add", v, m.op("Sqrt", positive))
    v = m.op("Div", v, m.op("Reciprocal", positive))
    v = m.op("Pow", m.op("Sigmoid", v), m.const(1.5))
    v = m.op("Max", m.op("Tanh", v), m.op("Erf", y))
    v = m.op("Min", v, m.op("Neg", z), m.op("Exp", x))
    v = m.op("LeakyRelu", v, alpha=0.3)
    v = m.op("HardSigmoid", v, alpha=0.4, beta=0.45)
    v = m.op("HardSwish", m.op("Add", v, x))
    v = m.op("Gelu", m.op("Gelu", v), approximate="tanh") if OPSET >= 20 else m.gelu(v)
    return m, [v]


def _branching_model(dtype):
    # t has two readers: the chain before it fuses, the two branches stay separate.
    m = _Model(dtype)
    x = m.input("x", [3, 1000])
    s = m.input("s", [1])
    t = m.op("Add", m.op("Mul", x, s), m.const(0.25))
    return m, [m.op("Relu", t), m.op("Tanh", t), t]


def _residual_layer_norm_model(dtype):
    # Add + LayerNormalization: the Add folds into the normalization (input 3) for cuda; the
    # broadcasting Add next to it must not.
    m = _Model(dtype)
    x = m.input("x", [3, 17, 768])
    r = m.input("r", [3, 17, 768])
    b = m.input("b", [768])
    scale = m.const_array(m.rng.uniform(0.5, 1.5, size=[768]))
    bias = m.const_array(m.rng.uniform(-1, 1, size=[768]))
    folded = m.op("LayerNormalization", m.op("Add", x, r), scale, bias, axis=-1, epsilon=1e-5)
    broadcast = m.op("LayerNormalization", m.op("Add", x, b), scale, axis=-1, epsilon=1e-5)
    return m, [folded, broadcast]


def _decomposed_norms_model(dtype):
    # LayerNorm as opset-16 exporters write it, then an RMSNorm as T5 writes it: 3 reduction passes.
    m = _Model(dtype)
    x = m.input("x", [4, 21, 160])
    last = m.axes([-1])
    mean = m.op("ReduceMean", x, last, keepdims=1)
    centered = m.op("Sub", x, mean)
    var = m.op("ReduceMean", m.op("Pow", centered, m.const(2.0)), last, keepdims=1)
    normalized = m.op("Div", centered, m.op("Sqrt", m.op("Add", var, m.const(1e-5))))
    ms = m.op("ReduceMean", m.op("Mul", normalized, normalized), last, keepdims=1)
    rms = m.op("Mul", normalized, m.op("Reciprocal", m.op("Sqrt", m.op("Add", ms, m.const(1e-6)))))
    return m, [m.op("Mul", rms, m.const_array(m.rng.uniform(0.5, 1.5, size=[160])))]


def _reductions_model(dtype):
    # Every Reduce op over the last axis (row kernels) and over a middle axis (column kernels),
    # with and without keepdims.
    m = _Model(dtype)
    x = m.input("x", [6, 37, 50], low=0.1, high=2.0)
    outs = []
    for axis in (-1, 1):
        for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
                   "ReduceSumSquare", "ReduceLogSumExp", "ReduceLogSum"):
            outs.append(m.op(op, m.op("Mul", x, m.const(0.5)), m.axes([axis]), keepdims=int(axis == 1)))
        outs.append(m.op("Softmax", x, axis=axis))
        outs.append(m.op("LogSoftmax", x, axis=axis))
    outs.append(m.op("ReduceProd", m.op("Add", x, m.const(0.5)), m.axes([-1]), keepdims=1))
    return m, outs


def _pooling_gate_model(dtype):
    # Squeeze-excitation without the convolutions: activation, global pool, gate, scale.
    m = _Model(dtype)
    x = m.input("x", [4, 48, 14, 14])
    act = m.op("HardSwish", x)
    pooled = m.op("GlobalAveragePool", act)
    gate = m.op("Sigmoid", m.op("Mul", pooled, m.const(3.0)))
    return m, [m.op("Mul", act, gate), m.op("GlobalMaxPool", x)]


def _compare_where_model(dtype):
    # Bool intermediates: comparisons, logic, Where and Casts to bool and back.
    m = _Model(dtype)
    x = m.input("x", [3, 64, 40])
    y = m.input("y", [40])
    bigger = m.op("Greater", x, y)
    either = m.op("Or", bigger, m.op("Less", x, m.const(-1.0)))
    picked = m.op("Where", either, x, m.op("Mul", y, m.const(2.0)))
    as_float = m.op("Cast", m.op("Not", bigger), to=_tensor_type(dtype))
    return m, [m.op("Add", picked, as_float), m.op("Clip", picked, m.const(-0.5), m.const(0.75))]


def _special_values_model(dtype):
    # NaN, infinities, -0 and denormals through activations, min/max and a reduction.
    m = _Model(dtype)
    x = m.input("x", [2, 64])
    y = m.op("Max", m.op("Relu", x), m.op("Neg", x))
    z = m.op("Min", m.op("Gelu", x), m.op("Elu", x, alpha=1.0))
    w = m.op("Add", m.op("HardSwish", x), m.op("Sigmoid", x))
    return m, [y, z, w, m.op("ReduceMax", x, m.axes([-1]), keepdims=1)]


def _special_feeds(feeds, dtype):
    x = feeds["x"].copy()
    tiny = np.finfo(np.dtype(dtype)).tiny / 4 if np.dtype(dtype) != np.float16 else np.float16(1e-6)
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, tiny, -tiny, 1e4, -1e4]
    x.flat[: len(specials)] = np.asarray(specials, dtype=np.float64).astype(dtype)
    x[1, 5] = np.nan  # a NaN in the second row too
    return {"x": x}


def _transposes_model(dtype):
    # Transposes that keep the innermost dim, folded into the groups' loads and stores: the
    # batch-first round trip around nn.MultiheadAttention, and a 4-D permute of the middle dims.
    m = _Model(dtype)
    attn = m.input("attn", [9, 4, 64])
    residual = m.input("residual", [4, 9, 64])
    y = m.input("y", [2, 5, 6, 32])
    total = m.op("Add", m.op("Transpose", attn, perm=[1, 0, 2]), residual)
    norm = m.op("LayerNormalization", total, m.const_array(m.rng.uniform(0.5, 1.5, size=[64])), axis=-1, epsilon=1e-5)
    swapped = m.op("Sigmoid", m.op("Mul", m.op("Transpose", y, perm=[0, 2, 1, 3]), m.const(0.75)))
    return m, [total, m.op("Transpose", norm, perm=[1, 0, 2]), m.op("Transpose", swapped, perm=[2, 0, 1, 3])]


MODELS = {
    "transposes": _transposes_model,
    "decomposed_norms": _decomposed_norms_model,
    "reductions": _reductions_model,
    "pooling_gate": _pooling_gate_model,
    "compare_where": _compare_where_model,
    "special_values": _special_values_model,
    "residual_layer_norm": _residual_layer_norm_model,
    "gelu": _gelu_model,
    "gelu_tanh_powers": _gelu_tanh_powers_model,
    "bias_gelu_residual": _bias_residual_model,
    "scale_mask_softmax": _attention_mask_model,
    "broadcast_every_op": _broadcast_chain_model,
    "branching": _branching_model,
}


def _compare(got: dict, want: dict, loose: bool, tolerance: float = 2e-2) -> None:
    assert list(got) == list(want)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape, f"{name}: shape cuda {out.shape}, cpu {ref.shape}"
        assert out.dtype == ref.dtype, f"{name}: dtype cuda {out.dtype}, cpu {ref.dtype}"
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(out64), np.isnan(ref64), err_msg=f"{name}: NaN positions")
        if loose:
            finite = np.isfinite(ref64)
            scale = max(1.0, float(np.max(np.abs(ref64[finite])))) if finite.any() else 1.0
            err = float(np.max(np.abs(out64[finite] - ref64[finite]))) if finite.any() else 0.0
            assert err <= tolerance * scale, f"{name}: max abs error {err} vs scale {scale}"
            np.testing.assert_array_equal(np.isinf(out64), np.isinf(ref64), err_msg=f"{name}: infinities")
        else:
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_float32_matches_cpu(name, tmp_path):
    m, outputs = MODELS[name](np.float32)
    model = m.model(outputs)
    feeds = _special_feeds(m.feeds, np.float32) if name == "special_values" else m.feeds
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    engine_bytes = kiln.build_onnx(model, target="cuda")
    cuda_engine = kiln.Engine(engine_bytes)
    assert cuda_engine.backend == "cuda"
    _compare(cuda_engine.run(feeds), cpu, loose=False)
    # Every pointwise op and reduction of these models runs in a generated kernel.
    layers = engine_layers(engine_bytes, tmp_path)
    ops = {layer["op"] for layer in layers}
    assert ops <= {"FusedGroup"}, f"layers outside generated kernels: {ops}"
    for layer in layers:
        assert layer["attributes"]["kiln_kernel"], layer


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_float16_tensors_match_cpu(name):
    m, outputs = MODELS[name](np.float16)
    model = m.model(outputs)
    feeds = _special_feeds(m.feeds, np.float16) if name == "special_values" else m.feeds
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda")).run(feeds)
    _compare(cuda, cpu, loose=True)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", ["gelu", "gelu_tanh_powers", "bias_gelu_residual", "scale_mask_softmax",
                                  "residual_layer_norm", "decomposed_norms", "pooling_gate", "reductions"])
def test_fused_half_engine_matches_cpu(name, precision):
    m, outputs = MODELS[name](np.float32)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(m.feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", precision=precision)).run(m.feeds)
    _compare(cuda, cpu, loose=True, tolerance=2e-2 if precision == "fp16" else 8e-2)


def test_dynamic_batch_runs_every_size_in_its_profile():
    # The batch is a symbol of the generated kernels: one engine serves every batch.
    m = _Model(np.float32)
    x = m.input("x", ["N", 24, 96], feed_shape=[1, 24, 96])
    h = m.op("Add", m.gelu(x), m.const_array(m.rng.uniform(-1, 1, size=[96])))
    y = m.op("LayerNormalization", h, m.const_array(np.ones(96)), axis=-1, epsilon=1e-5)
    model = m.model([y, m.op("ReduceMean", h, m.axes([1]), keepdims=0)])
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu", profiles={"x": [(1, 24, 96), (4, 24, 96), (64, 24, 96)]}))
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", profiles={"x": [(1, 24, 96), (4, 24, 96), (64, 24, 96)]}))
    rng = np.random.default_rng(3)
    for batch in (1, 3, 64, 2):
        feeds = {"x": rng.uniform(-2, 2, size=(batch, 24, 96)).astype(np.float32)}
        _compare(cuda.run(feeds), cpu.run(feeds), loose=False)


def test_fused_engine_runs_repeatedly_with_new_inputs():
    # The prepared state (decoded program, strides) is reused across runs with other data.
    m, outputs = _bias_residual_model(np.float32)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda"))
    rng = np.random.default_rng(11)
    for _ in range(3):
        feeds = {k: rng.uniform(-2, 2, size=v.shape).astype(v.dtype) for k, v in m.feeds.items()}
        _compare(cuda.run(feeds), cpu.run(feeds), loose=False)


def _long_column_reductions_model(dtype, batch=3):
    # Every one-pass Reduce op over the middle axes of an NHWC-shaped tensor with rows long enough
    # that the generated kernel has entries splitting them across blocks; epilogues after the
    # combine. (ReduceLogSumExp needs the max first: two passes, which do not split.)
    m = _Model(dtype)
    x = m.input("x", [batch if isinstance(batch, int) else batch[0], 40, 40, 24], low=0.1, high=2.0,
                feed_shape=None if isinstance(batch, int) else [batch[1], 40, 40, 24])
    scaled = m.op("Mul", x, m.const(0.5))
    outs = []
    for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceSumSquare", "ReduceL1",
               "ReduceLogSum"):
        outs.append(m.op("Sigmoid", m.op(op, scaled, m.axes([1, 2]), keepdims=1)))
    return m, outs


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_split_column_reductions_match_cpu_and_reset_their_counters(dtype, monkeypatch):
    # KILN_GROUP_ENTRY forces the entries that split the rows, so they run whatever timing says;
    # three runs with new data check that each launch leaves its counters at zero for the next.
    monkeypatch.setenv("KILN_GROUP_ENTRY", "_split")
    m, outputs = _long_column_reductions_model(dtype)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda"))
    rng = np.random.default_rng(5)
    for run in range(3):
        x = rng.uniform(0.1, 2.0, size=m.feeds["x"].shape).astype(dtype)
        if run == 1:
            x[1, 7, 3, 5] = np.nan  # one column of image 1 becomes NaN in every reduction
        _compare(cuda.run({"x": x}), cpu.run({"x": x}), loose=dtype == np.float16)


def test_split_column_reductions_with_a_dynamic_batch(monkeypatch):
    monkeypatch.setenv("KILN_GROUP_ENTRY", "_split")
    m, outputs = _long_column_reductions_model(np.float32, batch=("N", 1))
    model = m.model(outputs)
    profile = {"x": [(1, 40, 40, 24), (2, 40, 40, 24), (16, 40, 40, 24)]}
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu", profiles=profile))
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", profiles=profile))
    rng = np.random.default_rng(8)
    for batch in (1, 16, 5):
        feeds = {"x": rng.uniform(0.1, 2.0, size=(batch, 40, 40, 24)).astype(np.float32)}
        _compare(cuda.run(feeds), cpu.run(feeds), loose=False)


@pytest.mark.parametrize("entry", ["", "_split"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_column_reductions_store_their_space_outputs_in_the_same_sweep(dtype, entry, monkeypatch):
    # Squeeze-excitation in NHWC: SiLU's output is both stored and averaged over H and W. The first
    # sweep stores it as it accumulates, in the plain entries and in each slice of the split ones; a
    # value after the mean (x - mean) still takes a second sweep.
    if entry:
        monkeypatch.setenv("KILN_GROUP_ENTRY", entry)
    m = _Model(dtype)
    x = m.input("x", [3, 40, 40, 24])
    silu = m.op("Mul", x, m.op("Sigmoid", x))
    mean = m.op("ReduceMean", silu, m.axes([1, 2]), keepdims=1)
    outputs = [silu, mean]
    if not entry:  # a forced split entry would be missing from this group's kernel
        y = m.input("y", [3, 40, 40, 24])
        outputs.append(m.op("Sub", y, m.op("ReduceMax", y, m.axes([1, 2]), keepdims=1)))
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda"))
    rng = np.random.default_rng(12)
    for _ in range(2):
        feeds = {k: rng.uniform(-3, 3, size=v.shape).astype(dtype) for k, v in m.feeds.items()}
        _compare(cuda.run(feeds), cpu.run(feeds), loose=dtype == np.float16)


def test_a_forced_entry_that_no_kernel_has_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("KILN_GROUP_ENTRY", "_no_such_entry")
    m, outputs = _gelu_model(np.float32)
    with pytest.raises(kiln.KilnError, match="KILN_GROUP_ENTRY='_no_such_entry' matches no usable entry"):
        kiln.Engine(kiln.build_onnx(m.model(outputs), target="cuda")).run(m.feeds)


def _conv_epilogues_model(dtype):
    # An inverted residual block (EfficientNet's, batch norms folded): the 1x1 convs' biases and the
    # project conv's residual go into generated kernels (passes/conv_bias_epilogue.hpp), the
    # depthwise conv keeps its bias; a conv whose residual has no activation after it, read by a
    # conv (the Adds form a group of their own).
    m = _Model(dtype)
    x = m.input("x", [4, 16, 14, 14])

    def conv(v, out_channels, in_channels, k, group=1):
        w = m.const_array(m.rng.uniform(-0.3, 0.3, size=[out_channels, in_channels // group, k, k]))
        b = m.const_array(m.rng.uniform(-0.5, 0.5, size=[out_channels]))
        return m.op("Conv", v, w, b, kernel_shape=[k, k], pads=[k // 2] * 4, group=group)

    def silu(v):
        return m.op("Mul", v, m.op("Sigmoid", v))

    h = silu(conv(x, 64, 16, 1))
    h = silu(conv(h, 64, 64, 3, group=64))
    block = m.op("Add", conv(h, 16, 64, 1), x)
    tail = conv(m.op("Add", conv(block, 16, 16, 3), block), 8, 16, 1)
    return m, [block, tail]


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_conv_biases_and_residuals_in_generated_kernels_match_cpu(precision, layout, monkeypatch):
    monkeypatch.setenv("KILN_CONV_LAYOUT", layout)
    m, outputs = _conv_epilogues_model(np.float32)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(m.feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", precision=precision)).run(m.feeds)
    if precision == "fp32":
        _compare(cuda, cpu, loose=False)
    else:
        _compare(cuda, cpu, loose=True)
