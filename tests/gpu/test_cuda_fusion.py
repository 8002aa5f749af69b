"""Elementwise fusion on CUDA: models whose elementwise chains the builder fuses into
FusedElementwise layers for the cuda target (GELU as exported by torch, bias + residual adds, the
scale + mask before Softmax, broadcasting chains) must compute what the CPU engine (unfused, the
reference) computes. Numerics only: which layers were fused is checked by the C++ pass tests.

Tolerances as in test_cuda_conformance.py: float32 rtol 1e-4 / atol 1e-5; float16 tensors or
precision="fp16" engines max |cuda - cpu| <= 2e-2 * max(1, max |cpu|)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import kiln

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

    def input(self, name, shape, low=-3.0, high=3.0):
        self.inputs.append(helper.make_tensor_value_info(name, _tensor_type(self.dtype), shape))
        self.feeds[name] = self.rng.uniform(low, high, size=shape).astype(self.dtype)
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


MODELS = {
    "residual_layer_norm": _residual_layer_norm_model,
    "gelu": _gelu_model,
    "bias_gelu_residual": _bias_residual_model,
    "scale_mask_softmax": _attention_mask_model,
    "broadcast_every_op": _broadcast_chain_model,
    "branching": _branching_model,
}


def _compare(got: dict, want: dict, loose: bool) -> None:
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
            assert err <= 2e-2 * scale, f"{name}: max abs error {err} vs scale {scale}"
        else:
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_float32_matches_cpu(name):
    m, outputs = MODELS[name](np.float32)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(m.feeds)
    cuda_engine = kiln.Engine(kiln.build_onnx(model, target="cuda"))
    assert cuda_engine.backend == "cuda"
    _compare(cuda_engine.run(m.feeds), cpu, loose=False)


@pytest.mark.parametrize("name", list(MODELS))
def test_fused_float16_tensors_match_cpu(name):
    m, outputs = MODELS[name](np.float16)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(m.feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda")).run(m.feeds)
    _compare(cuda, cpu, loose=True)


@pytest.mark.parametrize("name", ["gelu", "bias_gelu_residual", "scale_mask_softmax", "residual_layer_norm"])
def test_fused_fp16_engine_matches_cpu(name):
    m, outputs = MODELS[name](np.float32)
    model = m.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(m.feeds)
    cuda = kiln.Engine(kiln.build_onnx(model, target="cuda", precision="fp16")).run(m.feeds)
    _compare(cuda, cpu, loose=True)


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
