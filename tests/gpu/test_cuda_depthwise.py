"""kiln's own depthwise convolution kernel on CUDA (src/backends/cuda/depthwise_conv_kernels.cu), a
Conv tactic beside cuDNN's algorithms, against the CPU backend (the reference).

- Single-node depthwise Convs in both layouts (NHWC through kiln_layout = "NHWC", W given as
  [C, kH, kW, 1]), float32 and float16 tensors and bf16 engines, with the epilogue the builder's
  fusion makes (bias, residual input 3, kiln_activation "Relu"), built with KILN_DEPTHWISE=force:
  the layer must record tactic "kiln_depthwise"; with KILN_DEPTHWISE=off: a cuDNN tactic. Each
  engine runs twice, the second time on other data (prepared state reused).
- A MobileNet/ConvNeXt-style block (1x1 expand, depthwise 3x3/5x5 s2/7x7 with a fused residual and
  Relu, odd channel counts), fp16 and bf16 engines, with the layout of its depthwise regions timed
  by the build (both engines built and timed, the faster kept and recorded in the metadata) and
  forced NHWC (KILN_CONV_LAYOUT=nhwc), tactics chosen by the build's timing: results against the
  CPU, and the tactic each depthwise layer recorded is printed (timing decides which).
- The same with KILN_DEPTHWISE=tiled for NHWC: the tiled kernel (tactic "kiln_depthwise_tiled")
  wherever it has a plan, the rows kernel elsewhere.
- A recorded kiln_depthwise tactic under KILN_DEPTHWISE=off at load falls back to cuDNN; a bad
  KILN_DEPTHWISE value is an error naming the variable.

Tolerances: float32 engines rtol 1e-4, atol 1e-5; otherwise max |cuda - cpu| <= tol * max(1,
max |cpu|) with tol = 2e-2 (fp16), 6e-2 (bf16). Weights are scaled by fan-in so outputs stay near
unit scale."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from engine_layers import engine_layers

OPSET = 18
TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bf16": 6e-2}

# name: (N, C, H, W, kernel, stride, pad)
SHAPES = {
    "convnext_7x7": (2, 96, 14, 14, 7, 1, 3),
    "mobilenet_3x3_s2": (3, 24, 15, 17, 3, 2, 1),
    "efficientnet_5x5": (1, 40, 17, 15, 5, 1, 2),
    "5x5_s2": (1, 16, 13, 13, 5, 2, 2),
    "7x7_s2": (1, 8, 13, 9, 7, 2, 3),
    "3x3_s1_rows_tiled": (1, 16, 70, 40, 3, 1, 1),
    "generic_9x9": (1, 8, 11, 10, 9, 1, 4),
    "odd_channels_3x3": (2, 13, 9, 11, 3, 1, 1),
}
# name: (bias, residual, relu)
EPILOGUES = {
    "bias": (True, False, False),
    "bias_residual_relu": (True, True, True),
    "relu_no_bias": (False, False, True),
    "residual_no_activation": (False, True, False),
}


def _depthwise_model(shape, layout, dtype, epilogue, seed=0):
    """One depthwise Conv: (model bytes, feeds, output shape in the layout's order)."""
    n, c, h, w, k, stride, pad = shape
    bias, residual, relu = EPILOGUES[epilogue]
    rng = np.random.default_rng(seed + 7 * c + k)
    tensor_dtype = np.float16 if dtype == "float16" else np.float32
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(tensor_dtype))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    nhwc = layout == "nhwc"
    x_shape = [n, h, w, c] if nhwc else [n, c, h, w]
    y_shape = [n, oh, ow, c] if nhwc else [n, c, oh, ow]
    weights = rng.uniform(-1, 1, size=(c, 1, k, k)) * np.sqrt(3.0 / (k * k))
    if nhwc:
        weights = weights.transpose(0, 2, 3, 1)  # [C, kH, kW, 1]
    inits = [numpy_helper.from_array(weights.astype(tensor_dtype), "w")]
    inputs = ["x", "w"]
    feeds = {"x": rng.standard_normal(x_shape).astype(tensor_dtype)}
    if bias:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, size=c).astype(tensor_dtype), "b"))
    if bias or residual:
        inputs.append("b" if bias else "")
    attrs = dict(group=c, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
    if residual:
        feeds["r"] = rng.standard_normal(y_shape).astype(tensor_dtype)
        inputs.append("r")
    if relu:
        attrs["kiln_activation"] = "Relu"
    if nhwc:
        attrs["kiln_layout"] = "NHWC"
    infos = [helper.make_tensor_value_info(name, elem, list(v.shape)) for name, v in feeds.items()]
    node = helper.make_node("Conv", inputs, ["y"], name="depthwise", **attrs)
    graph = helper.make_graph([node], "depthwise", infos, [helper.make_tensor_value_info("y", elem, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString(), feeds, y_shape


def _compare(got, want, precision, what=""):
    assert got.shape == want.shape, f"{what}: shape cuda {got.shape}, cpu {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype cuda {got.dtype}, cpu {want.dtype}"
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    if precision == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=what)
        return
    want64 = want.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(want64))))
    err = float(np.max(np.abs(got.astype(np.float64) - want64)))
    assert err <= TOLERANCE[precision] * scale, f"{what}: max abs error {err} vs scale {scale}"


def _build_and_check(model, feeds, dtype, tmp_path, other_feeds=None):
    """Builds for CUDA, compares with the CPU (twice with other_feeds); returns the Conv layers'
    recorded tactics by layer name."""
    precision = "bf16" if dtype == "bf16" else "fp32"
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    engine = kiln.Engine(engine_bytes)
    assert engine.backend == "cuda"
    for run_feeds in [feeds] + ([other_feeds] if other_feeds else []):
        want = cpu.run(run_feeds)
        got = engine.run(run_feeds)
        assert list(got) == list(want)
        for name in want:
            _compare(got[name], want[name], dtype, name)
    return {layer["name"]: layer["attributes"].get("kiln_tactic")
            for layer in engine_layers(engine_bytes, tmp_path) if layer["op"] == "Conv"}


def _other_feeds(feeds, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(v.shape).astype(v.dtype) for name, v in feeds.items()}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bf16"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_own_kernel_matches_cpu(shape, layout, dtype, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DEPTHWISE", "force")
    # Every shape with the full epilogue, and one other epilogue in rotation.
    others = [e for e in EPILOGUES if e != "bias_residual_relu"]
    rotation = others[(list(SHAPES).index(shape) + ["float32", "float16", "bf16"].index(dtype)) % len(others)]
    for epilogue in ["bias_residual_relu", rotation]:
        model, feeds, _ = _depthwise_model(SHAPES[shape], layout, dtype, epilogue)
        tactics = _build_and_check(model, feeds, dtype, tmp_path, _other_feeds(feeds, 3))
        assert tactics == {"depthwise": "kiln_depthwise"}, f"{epilogue}: {tactics}"


@pytest.mark.parametrize("dtype", ["float32", "float16", "bf16"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_tiled_nhwc_kernel_matches_cpu(shape, dtype, tmp_path, monkeypatch):
    """KILN_DEPTHWISE=tiled: the tiled NHWC kernel (the input tile staged in shared memory) where
    it has a plan (3x3, 5x5, 7x7 windows, channels a multiple of the 16-byte vector), recorded as
    kiln_depthwise_tiled; elsewhere the rows kernel (kiln_depthwise)."""
    monkeypatch.setenv("KILN_DEPTHWISE", "tiled")
    _, c, _, _, k, _, _ = SHAPES[shape]
    vector = 4 if dtype == "float32" else 8
    expected = "kiln_depthwise_tiled" if k in (3, 5, 7) and c % vector == 0 else "kiln_depthwise"
    for epilogue in ["bias_residual_relu", "relu_no_bias"]:
        model, feeds, _ = _depthwise_model(SHAPES[shape], "nhwc", dtype, epilogue)
        tactics = _build_and_check(model, feeds, dtype, tmp_path, _other_feeds(feeds, 5))
        assert tactics == {"depthwise": expected}, f"{epilogue}: {tactics}"


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", ["convnext_7x7", "mobilenet_3x3_s2"])
def test_cudnn_alone_with_knob_off(shape, layout, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DEPTHWISE", "off")
    model, feeds, _ = _depthwise_model(SHAPES[shape], layout, "float16", "bias_residual_relu")
    tactics = _build_and_check(model, feeds, "float16", tmp_path)
    assert tactics["depthwise"].startswith("cudnn:algo="), tactics


def test_recorded_own_tactic_falls_back_under_knob_off(tmp_path, monkeypatch):
    model, feeds, _ = _depthwise_model(SHAPES["convnext_7x7"], "nchw", "float16", "bias_residual_relu")
    monkeypatch.setenv("KILN_DEPTHWISE", "force")
    engine_bytes = kiln.build_onnx(model, target="cuda")
    assert {layer["name"]: layer["attributes"].get("kiln_tactic") for layer in engine_layers(engine_bytes, tmp_path)
            if layer["op"] == "Conv"} == {"depthwise": "kiln_depthwise"}
    want = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["y"]
    monkeypatch.setenv("KILN_DEPTHWISE", "off")  # at load: cuDNN is timed and runs instead
    _compare(kiln.Engine(engine_bytes).run(feeds)["y"], want, "float16")
    monkeypatch.delenv("KILN_DEPTHWISE")  # the recorded tactic again
    _compare(kiln.Engine(engine_bytes).run(feeds)["y"], want, "float16")


def test_bad_knob_value_names_the_variable(monkeypatch):
    model, _, _ = _depthwise_model(SHAPES["mobilenet_3x3_s2"], "nchw", "float16", "bias")
    monkeypatch.setenv("KILN_DEPTHWISE", "on")
    with pytest.raises(kiln.KilnError, match="KILN_DEPTHWISE must be 'off', 'force' or 'tiled' \\(or unset\\), got 'on'"):
        kiln.build_onnx(model, target="cuda")


# ---- a MobileNet/ConvNeXt-style block ----------------------------------------------------------------

class _Net:
    """Float32 ONNX CNN builder: weights scaled by fan-in, a random input."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self._count = 0

    def const(self, array):
        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def op(self, op_type, *inputs, **attrs):
        self._count += 1
        out = f"{op_type.lower()}{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, group=1):
        w = self.rng.uniform(-1, 1, size=(cout, cin // group, k, k)) * np.sqrt(3.0 / (cin // group * k * k))
        b = self.rng.uniform(-0.2, 0.2, size=cout)
        return self.op("Conv", x, self.const(w), self.const(b), strides=[stride, stride], pads=[k // 2] * 4,
                       group=group)

    def batch_norm(self, x, channels):
        return self.op("BatchNormalization", x, self.const(self.rng.uniform(0.5, 1.5, size=channels)),
                       self.const(self.rng.uniform(-0.2, 0.2, size=channels)),
                       self.const(self.rng.uniform(-0.2, 0.2, size=channels)),
                       self.const(self.rng.uniform(0.5, 1.5, size=channels)))


def _block_model():
    n = _Net(11)
    x = "x"
    # Inverted residual (MobileNetV2): expand, depthwise 3x3, project, residual add.
    e = n.op("Relu", n.batch_norm(n.conv(x, 16, 64, 1), 64))
    d = n.op("Relu", n.batch_norm(n.conv(e, 64, 64, 3, group=64), 64))
    p = n.op("Add", n.batch_norm(n.conv(d, 64, 16, 1), 16), x)
    # EfficientNet: expand + HardSwish, depthwise 5x5 stride 2.
    e = n.op("HardSwish", n.conv(p, 16, 96, 1))
    d = n.op("HardSwish", n.batch_norm(n.conv(e, 96, 96, 5, stride=2, group=96), 96))
    p = n.conv(d, 96, 24, 1)
    # ConvNeXt-style depthwise 7x7 whose residual add and Relu the builder fuses into the Conv.
    d = n.op("Relu", n.op("Add", n.conv(p, 24, 24, 7, group=24), p))
    # An odd channel count (20: no 8-channel vectors in NHWC).
    q = n.conv(d, 24, 20, 1)
    out = n.op("Relu", n.conv(q, 20, 20, 3, group=20))
    graph = helper.make_graph(n.nodes, "block",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 28, 28])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], n.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString(), {"x": n.rng.standard_normal([2, 16, 28, 28]).astype(np.float32)}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("layout", ["timed", "nhwc"])
def test_block_matches_cpu_and_records_tactics(layout, precision, tmp_path, monkeypatch):
    # "timed": the build times the engine with depthwise regions in NCHW and in NHWC and keeps the
    # faster (recorded in the metadata); "nhwc": KILN_CONV_LAYOUT forces NHWC and nothing is timed.
    if layout == "nhwc":
        monkeypatch.setenv("KILN_CONV_LAYOUT", "nhwc")
    else:
        monkeypatch.delenv("KILN_CONV_LAYOUT", raising=False)
    model, feeds = _block_model()
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    engine_bytes = kiln.build_onnx(model, target="cuda", precision=precision)
    engine = kiln.Engine(engine_bytes)
    choice = engine.metadata["kiln_build"].get("conv_layout")
    if layout == "timed":
        assert choice and choice["nchw_ms"] > 0 and choice["nhwc_ms"] > 0, engine.metadata["kiln_build"]
        assert choice["depthwise_regions"] == ("nhwc" if choice["nhwc_ms"] < choice["nchw_ms"] else "nchw"), choice
        print(f"timed layout {precision}: {choice}")
        layout = choice["depthwise_regions"]
    else:
        assert choice is None, choice
    tolerance = "float16" if precision == "fp16" else "bf16"
    for run_feeds in [feeds, _other_feeds(feeds, 5)]:
        want = cpu.run(run_feeds)
        got = engine.run(run_feeds)
        for name in want:
            _compare(got[name], want[name], tolerance, name)
    layers = engine_layers(engine_bytes, tmp_path)
    depthwise = [layer for layer in layers if layer["op"] == "Conv" and layer["attributes"].get("group", 1) > 1]
    assert len(depthwise) == 4, [layer["name"] for layer in depthwise]
    fused = [layer for layer in depthwise if len(layer["inputs"]) > 3 and layer["inputs"][3]]
    assert fused and fused[0]["attributes"].get("kiln_activation") == "Relu", "7x7 residual + Relu not fused"
    for layer in depthwise:
        attrs = layer["attributes"]
        assert attrs.get("kiln_layout", "NCHW") == ("NHWC" if layout == "nhwc" else "NCHW"), layer["name"]
        assert attrs.get("kiln_tactic"), f"{layer['name']}: no tactic recorded"
        print(f"{layout} {precision} {layer['name']}: {attrs['kiln_tactic']}")
