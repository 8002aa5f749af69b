"""NHWC convolution regions on CUDA: fp16/bf16 engines of small CNNs keep activations NHWC between
convolutions (the builder's layout pass: Conv and pooling layers carry kiln_layout = "NHWC",
Transposes only where tensors enter or leave the region) and must compute what a float32 CPU
engine of the same model (NCHW, the reference) computes.

Tolerances: max |cuda - cpu| <= tol * max(1, max |cpu|), tol = 2e-2 for fp16 engines and 6e-2 for
bf16 engines (16-bit storage between layers, fp32 accumulation inside them). Weights are scaled by
fan-in so activations stay near unit scale through the network."""

from __future__ import annotations


import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from engine_layers import engine_layers

OPSET = 18
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 6e-2}


class _Net:
    """Float32 ONNX CNN builder: weights scaled by fan-in, random input feeds."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.inputs, self.nodes, self.inits, self.feeds = [], [], [], {}
        self._count = 0

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        self.feeds[name] = self.rng.standard_normal(shape).astype(np.float32)
        return name

    def const(self, array, dtype=np.float32):
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def op(self, op_type, *inputs, **attrs):
        self._count += 1
        out = f"{op_type.lower()}{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, group=1, bias=True, pad=None):
        fan_in = cin // group * k * k
        w = self.rng.uniform(-1, 1, size=(cout, cin // group, k, k)) * np.sqrt(3.0 / fan_in)
        inputs = [x, self.const(w)]
        if bias:
            inputs.append(self.const(self.rng.uniform(-0.2, 0.2, size=cout)))
        p = k // 2 if pad is None else pad
        return self.op("Conv", *inputs, strides=[stride, stride], pads=[p, p, p, p], group=group)

    def batch_norm(self, x, channels):
        scale = self.const(self.rng.uniform(0.5, 1.5, size=channels))
        shift = self.const(self.rng.uniform(-0.2, 0.2, size=channels))
        mean = self.const(self.rng.uniform(-0.2, 0.2, size=channels))
        var = self.const(self.rng.uniform(0.5, 1.5, size=channels))
        return self.op("BatchNormalization", x, scale, shift, mean, var)

    def head(self, x, channels, classes):
        flat = self.op("Flatten", self.op("GlobalAveragePool", x))
        w = self.const(self.rng.uniform(-1, 1, size=(classes, channels)) / np.sqrt(channels))
        return self.op("Gemm", flat, w, self.const(np.zeros(classes)), transB=1)

    def model(self, outputs) -> bytes:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "layout", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        return model.SerializeToString()


def _residual(channels=16):
    # Stem conv + BN + ReLU, max pool, a basic residual block (BN folded, add + relu fused), head.
    n = _Net(1)
    x = n.input("x", [2, 3, 32, 32])
    stem = n.op("Relu", n.batch_norm(n.conv(x, 3, channels, 3, stride=2), channels))
    pooled = n.op("MaxPool", stem, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    a = n.op("Relu", n.batch_norm(n.conv(pooled, channels, channels, 3, bias=False), channels))
    b = n.batch_norm(n.conv(a, channels, channels, 3, bias=False), channels)
    block = n.op("Relu", n.op("Add", b, pooled))
    return n, [n.head(block, channels, 10)], 3, 2


def _pooling(channels=16):
    # Max/average pools with asymmetric pads, dilation, ceil_mode and count_include_pad; the graph
    # output is a region tensor (it leaves through a Transpose).
    n = _Net(2)
    x = n.input("x", [2, 6, 23, 20])
    a = n.conv(x, 6, channels, 3)
    m = n.op("MaxPool", a, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1)
    m2 = n.op("MaxPool", m, kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 1, 1, 1])
    b = n.conv(m2, channels, channels, 1)
    p = n.op("AveragePool", b, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=1, ceil_mode=1)
    p2 = n.op("AveragePool", p, kernel_shape=[2, 2], pads=[1, 1, 0, 0])
    p3 = n.op("AveragePool", p2, kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)
    return n, [n.conv(p3, channels, 8, 3, stride=2)], 3, 2


def _depthwise_se(channels=32):
    # MobileNetV3 pieces: expand 1x1 + HardSwish, depthwise 3x3 stride 2, squeeze-excitation as
    # torch exports it (ReduceMean over H, W), grouped conv, a per-channel constant, both global
    # pools; the GlobalMaxPool result is also an output of its own.
    n = _Net(3)
    x = n.input("x", [2, 16, 29, 29])
    e = n.op("HardSwish", n.conv(x, 16, channels, 1))
    d = n.op("HardSwish", n.conv(e, channels, channels, 3, stride=2, group=channels))
    s = n.op("ReduceMean", d, n.const([-1, -2], np.int64), keepdims=1)
    s = n.op("Relu", n.conv(s, channels, channels // 4, 1))
    gate = n.op("HardSigmoid", n.conv(s, channels // 4, channels, 1), alpha=1.0 / 6.0)
    excited = n.op("Mul", d, gate)
    g = n.conv(excited, channels, 16, 3, group=4, bias=False)
    shifted = n.op("Add", g, n.const(n.rng.uniform(-0.5, 0.5, size=(16, 1, 1))))
    peak = n.op("GlobalMaxPool", shifted)
    # The squeeze-excitation's two 1x1 convs of a 1x1 map run as GEMMs: 3 convs remain.
    return n, [n.head(shifted, 16, 7), peak], 3, 3


def _plain_convs():
    # 1x1 and strided 3x3 convolutions without bias, odd channel counts (no 16-byte vectors).
    n = _Net(4)
    x = n.input("x", [3, 5, 17, 15])
    a = n.op("Relu", n.conv(x, 5, 12, 1, bias=False))
    b = n.op("Sigmoid", n.conv(a, 12, 7, 3, stride=2, bias=False))
    c = n.op("MaxPool", b, kernel_shape=[2, 2], strides=[2, 2])
    return n, [n.op("GlobalAveragePool", n.conv(c, 7, 9, 3))], 3, 2


MODELS = {
    "residual_block": _residual,
    "pooling": _pooling,
    "pooling_c12": lambda: _pooling(12),
    "depthwise_se": _depthwise_se,
    "plain_convs_odd_channels": _plain_convs,
}



def _compare(got: dict, want: dict, precision: str) -> None:
    assert list(got) == list(want)
    for name, ref in want.items():
        out = got[name]
        assert out.shape == ref.shape, f"{name}: shape cuda {out.shape}, cpu {ref.shape}"
        assert out.dtype == ref.dtype, f"{name}: dtype cuda {out.dtype}, cpu {ref.dtype}"
        assert np.all(np.isfinite(out)), f"{name}: non-finite values"
        ref64 = ref.astype(np.float64)
        scale = max(1.0, float(np.max(np.abs(ref64))))
        err = float(np.max(np.abs(out.astype(np.float64) - ref64)))
        print(f"{name} {precision}: max abs error {err:.3e}, max |ref| {scale:.3e}")
        assert err <= TOLERANCE[precision] * scale, f"{name}: max abs error {err} vs scale {scale}"


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_nhwc_region_matches_cpu(name, precision, tmp_path, monkeypatch):
    if name == "depthwise_se":  # depthwise regions convert only when NHWC is forced
        monkeypatch.setenv("KILN_CONV_LAYOUT", "nhwc")
    net, outputs, convs, transposes = MODELS[name]()
    model = net.model(outputs)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(net.feeds)
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    engine = kiln.Engine(engine_bytes)
    assert engine.backend == "cuda"
    _compare(engine.run(net.feeds), cpu, precision)
    # Run again with other data: prepared state (cuDNN descriptors, algorithms) is reused.
    rng = np.random.default_rng(9)
    feeds = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in net.feeds.items()}
    cpu_engine = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    _compare(engine.run(feeds), cpu_engine.run(feeds), precision)

    layers = engine_layers(engine_bytes, tmp_path, members=True)
    conv_layers = [layer for layer in layers if layer["op"] == "Conv"]
    assert len(conv_layers) == convs
    for layer in conv_layers:
        assert layer["attributes"].get("kiln_layout") == "NHWC", layer["name"]
    for layer in layers:
        if layer["op"] in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
            assert layer["attributes"].get("kiln_layout") == "NHWC", layer["name"]
    assert sum(layer["op"] == "Transpose" for layer in layers) == transposes


def test_float32_engine_stays_nchw(tmp_path):
    net, outputs, convs, _ = _residual()
    engine_bytes = kiln.build_onnx(net.model(outputs), target="cuda")
    layers = engine_layers(engine_bytes, tmp_path, members=True)
    assert sum(layer["op"] == "Conv" for layer in layers) == convs
    assert not any("kiln_layout" in layer["attributes"] for layer in layers)
    assert not any(layer["op"] == "Transpose" for layer in layers)


def test_conv_layout_override(tmp_path, monkeypatch):
    # KILN_CONV_LAYOUT=nchw keeps fp16 convolutions NCHW (for comparing the two); any other value
    # is an error that names the variable and the value.
    net, outputs, convs, _ = _residual()
    model = net.model(outputs)
    monkeypatch.setenv("KILN_CONV_LAYOUT", "nchw")
    layers = engine_layers(kiln.build_onnx(model, target="cuda", precision="fp16"), tmp_path, members=True)
    assert sum(layer["op"] == "Conv" for layer in layers) == convs
    assert not any("kiln_layout" in layer["attributes"] for layer in layers)
    monkeypatch.setenv("KILN_CONV_LAYOUT", "NHCW")
    with pytest.raises(kiln.InvalidArgumentError,
                       match="KILN_CONV_LAYOUT must be 'nchw' or 'nhwc', got 'NHCW'"):
        kiln.build_onnx(model, target="cuda", precision="fp16")


def test_depthwise_region_stays_nchw_by_default(tmp_path):
    # cuDNN's NHWC depthwise kernels are slower than its NCHW ones: no conversion, no transposes.
    net, outputs, _, _ = _depthwise_se()
    model = net.model(outputs)
    engine_bytes = kiln.build_onnx(model, target="cuda", precision="fp16")
    layers = engine_layers(engine_bytes, tmp_path, members=True)
    assert not any("kiln_layout" in layer["attributes"] for layer in layers)
    assert not any(layer["op"] == "Transpose" for layer in layers)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(net.feeds)
    _compare(kiln.Engine(engine_bytes).run(net.feeds), cpu, "fp16")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_patch_embedding_becomes_a_gemm(precision, tmp_path):
    # A ViT-style patch embedding (kernel == stride, no padding) runs as one GEMM, not as a conv,
    # and no NHWC region forms around it.
    n = _Net(5)
    x = n.input("x", [2, 3, 32, 32])
    patches = n.conv(x, 3, 16, 8, stride=8, pad=0)
    tokens = n.op("Reshape", patches, n.const([2, 16, 16], np.int64))
    model = n.model([tokens])
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    layers = engine_layers(engine_bytes, tmp_path)
    assert not any(layer["op"] == "Conv" for layer in layers)
    assert sum(layer["op"] == "MatMul" for layer in layers) == 1
    assert not any("kiln_layout" in layer["attributes"] for layer in layers)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(n.feeds)
    _compare(kiln.Engine(engine_bytes).run(n.feeds), cpu, precision)


# ---- NHWC kernels on their own: single-node models carrying kiln_layout = "NHWC" directly ----

_POOL_CASES = {
    "max_3x3_s2_pad": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "max_ceil_dilated": ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 2], dilations=[2, 1],
                                         pads=[1, 0, 1, 1], ceil_mode=1)),
    "avg_pad_exclude": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "avg_include_pad_ceil": ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 0, 1],
                                                 count_include_pad=1, ceil_mode=1)),
    "avg_same_upper": ("AveragePool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER")),
    "global_avg": ("GlobalAveragePool", {}),
    "global_max": ("GlobalMaxPool", {}),
}
# NHWC input shapes: vectorised for float16 (C % 8 == 0) and float32 (C % 4 == 0), scalar (C = 7),
# a large H * W (the global pools' block reduction), batch 5.
_NHWC_SHAPES = [[2, 9, 11, 16], [1, 13, 10, 12], [3, 8, 7, 7], [5, 56, 56, 24], [1, 7, 7, 1000]]


def _single_node(op_type, inputs, attrs, dtype, feeds, inits=()) -> bytes:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    infos = [helper.make_tensor_value_info(n, elem, list(v.shape)) for n, v in feeds.items()]
    node = helper.make_node(op_type, inputs, ["y"], kiln_layout="NHWC", **attrs)
    graph = helper.make_graph([node], "nhwc_op", infos, [helper.make_tensor_value_info("y", elem, None)],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]).SerializeToString()


def _compare_single(got, want, dtype):
    assert got.shape == want.shape and got.dtype == want.dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    else:
        scale = max(1.0, float(np.max(np.abs(want.astype(np.float64)))))
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        assert err <= 1e-2 * scale, f"max abs error {err} vs scale {scale}"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", _NHWC_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", list(_POOL_CASES))
def test_nhwc_pool_kernel_matches_cpu(case, shape, dtype):
    op_type, attrs = _POOL_CASES[case]
    rng = np.random.default_rng(len(case) + sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    if op_type == "GlobalMaxPool" and shape[0] > 1:
        x[1, 0, 0, 0] = np.nan  # NaN propagates through the max, as on the CPU
    model = _single_node(op_type, ["x"], attrs, dtype, {"x": x})
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run({"x": x})["y"]
    got = kiln.Engine(kiln.build_onnx(model, target="cuda")).run({"x": x})["y"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    _compare_single(np.where(finite, got, 0), np.where(finite, want, 0), dtype)


@pytest.mark.parametrize("case", ["3x3_bias_relu_residual", "1x1_stride2", "depthwise", "grouped_c3"])
def test_nhwc_conv_kernel_matches_cpu(case):
    # float16 tensors (the tensor-core path the layout pass produces); W given as KRSC directly.
    rng = np.random.default_rng(21)
    x_shape, m, k, group, attrs, bias, residual = {
        "3x3_bias_relu_residual": ([2, 10, 9, 16], 32, 3, 1, dict(pads=[1, 1, 1, 1]), True, True),
        "1x1_stride2": ([1, 12, 12, 24], 8, 1, 1, dict(strides=[2, 2]), False, False),
        "depthwise": ([2, 15, 15, 32], 32, 3, 32, dict(strides=[2, 2], pads=[1, 1, 1, 1]), True, False),
        "grouped_c3": ([1, 20, 20, 3], 6, 5, 3, dict(pads=[2, 2, 2, 2], dilations=[1, 1]), True, False),
    }[case]
    c = x_shape[3]
    x = rng.standard_normal(x_shape).astype(np.float16)
    w = (rng.uniform(-1, 1, size=(m, k, k, c // group)) * np.sqrt(3.0 / (k * k * c // group))).astype(np.float16)
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w"]
    if bias or residual:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, size=m).astype(np.float16), "b"))
        inputs.append("b" if bias else "")
    feeds = {"x": x}
    if residual:
        attrs = dict(attrs, kiln_activation="Relu")
        out_h = (x_shape[1] + 2 - 3) + 1
        out_w = (x_shape[2] + 2 - 3) + 1
        feeds["r"] = rng.standard_normal([x_shape[0], out_h, out_w, m]).astype(np.float16)
        inputs.append("r")
    model = _single_node("Conv", inputs, dict(attrs, group=group), np.float16, feeds, inits)
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]
    got = kiln.Engine(kiln.build_onnx(model, target="cuda")).run(feeds)["y"]
    _compare_single(got, want, np.float16)


# MobileNetV3's 16 squeeze-excitation convs of a 1x1 map run as GEMMs: 62 - 16 convs stay.
@pytest.mark.parametrize("name,convs,pools", [("resnet50", 53, {"MaxPool": 1, "GlobalAveragePool": 1}),
                                              ("mobilenet_v3", 46, {"GlobalAveragePool": 9})])
def test_real_backbones_are_one_region(name, convs, pools, tmp_path, monkeypatch):
    # Numerics of these models are checked by test_cuda_models.py; here: the whole backbone is one
    # NHWC region, entered once after the input's cast and left once before the classifier.
    # (MobileNetV3 has depthwise convolutions: the build times the engine with them NCHW and NHWC
    # and keeps the faster, which the metadata records; NHWC is then forced for the region check.)
    from gpu_models import onnx_path

    if name == "mobilenet_v3":
        monkeypatch.delenv("KILN_CONV_LAYOUT", raising=False)
        timed = kiln.build_onnx(str(onnx_path(name, 1)), target="cuda", precision="fp16")
        choice = kiln.Engine(timed).metadata["kiln_build"]["conv_layout"]
        print(f"mobilenet_v3 batch 1 layout: {choice}")
        layers = engine_layers(timed, tmp_path, members=True)
        if choice["depthwise_regions"] == "nchw":
            assert not any("kiln_layout" in layer["attributes"] for layer in layers)
            assert not any(layer["op"] == "Transpose" for layer in layers)
        else:
            assert all(layer["attributes"].get("kiln_layout") == "NHWC" for layer in layers if layer["op"] == "Conv")
        monkeypatch.setenv("KILN_CONV_LAYOUT", "nhwc")

    layers = engine_layers(kiln.build_onnx(str(onnx_path(name, 1)), target="cuda", precision="fp16"),
                     tmp_path, members=True)
    conv_layers = [layer for layer in layers if layer["op"] == "Conv"]
    assert len(conv_layers) == convs
    assert all(layer["attributes"].get("kiln_layout") == "NHWC" for layer in conv_layers)
    for op, count in pools.items():
        found = [layer for layer in layers if layer["op"] == op]
        assert len(found) == count, op
        assert all(layer["attributes"].get("kiln_layout") == "NHWC" for layer in found), op
    assert sum(layer["op"] == "Transpose" for layer in layers) == 2
