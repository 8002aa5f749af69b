"""Symbolic dims (docs/architecture.md#symbolic-dims) end to end: a ResNet-18-shaped model with a
dynamic batch builds to as many layers as with a static one (every Conv+Add+Relu fused), runs
correctly at several batch sizes of its profile, and `kiln build --explain` says why a residual Add
whose dims cannot be proven equal stays unfused."""

from __future__ import annotations

import json
from collections import Counter
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_ort


def resnet18_like(batch, width: int = 8, size: int = 32) -> onnx.ModelProto:
    """ResNet-18's layout at a small width: 7x7/2 stem + BatchNorm + Relu, 3x3/2 MaxPool, four
    stages of two basic blocks (3x3 convs with BatchNorm, a 1x1/2 projection where the shape
    changes, residual Add, Relu), GlobalAveragePool, Flatten, Gemm. `batch` is the input's batch
    dim: an int, a dim_param name or None (anonymous)."""
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    count = [0]

    def fresh(prefix: str) -> str:
        count[0] += 1
        return f"{prefix}{count[0]}"

    def conv_bn(x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        w = fresh("w")
        scale = (2.0 / (cin * k * k)) ** 0.5
        weights.append(numpy_helper.from_array(
            (rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32), w))
        conv = fresh("conv")
        nodes.append(helper.make_node("Conv", [x, w], [conv], name=conv, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        params = [fresh(p) for p in ("gamma", "beta", "mean", "var")]
        for name, low, high in zip(params, (0.5, -0.1, -0.1, 0.5), (1.5, 0.1, 0.1, 1.5)):
            weights.append(numpy_helper.from_array(rng.uniform(low, high, cout).astype(np.float32), name))
        bn = fresh("bn")
        nodes.append(helper.make_node("BatchNormalization", [conv] + params, [bn], name=bn))
        if not relu:
            return bn
        out = fresh("relu")
        nodes.append(helper.make_node("Relu", [bn], [out], name=out))
        return out

    x = conv_bn("input", 3, width, 7, 2, True)
    pool = fresh("pool")
    nodes.append(helper.make_node("MaxPool", [x], [pool], name=pool, kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1] * 4))
    x, cin = pool, width
    for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, cin, cout, 3, stride, True), cout, cout, 3, 1, False)
            shortcut = x if stride == 1 and cin == cout else conv_bn(x, cin, cout, 1, stride, False)
            add, out = fresh("add"), fresh("relu")
            nodes.append(helper.make_node("Add", [y, shortcut], [add], name=add))
            nodes.append(helper.make_node("Relu", [add], [out], name=out))
            x, cin = out, cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    weights.append(numpy_helper.from_array((rng.standard_normal((10, cin)) * 0.1).astype(np.float32), "fc_w"))
    weights.append(numpy_helper.from_array((rng.standard_normal(10) * 0.1).astype(np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "resnet18_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def two_input_block(x_batch, r_batch) -> onnx.ModelProto:
    """Relu(Conv(x) + r) with x [x_batch, 4, 8, 8] and r [r_batch, 4, 8, 8]."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "r"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "two_input_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x_batch, 4, 8, 8]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [r_batch, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x_batch, 4, 8, 8])],
        [numpy_helper.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def cli(kiln_cli, *args) -> str:
    result = subprocess.run([str(kiln_cli), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"kiln {args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def layers_of(kiln_cli, engine_path) -> list[dict]:
    return json.loads(cli(kiln_cli, "inspect", engine_path, "--json"))["layers"]


BATCH_PROFILE = {"input": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))}


@pytest.fixture(scope="module")
def engines(tmp_path_factory, kiln_cli):
    """The ResNet-18-shaped model built with a static batch of 3, a dim_param batch and an
    anonymous batch: (model, engine path, layers) per kind."""
    workdir = tmp_path_factory.mktemp("symbolic")
    out = {}
    for kind, batch in (("static", 3), ("named", "N"), ("anonymous", None)):
        model = resnet18_like(batch)
        path = workdir / f"{kind}.kiln"
        profiles = None if kind == "static" else BATCH_PROFILE
        path.write_bytes(kiln.build_onnx(model, profiles=profiles))
        out[kind] = (model, path, layers_of(kiln_cli, path))
    return out


def test_dynamic_batch_builds_as_many_layers_as_static(engines):
    ops = {kind: Counter(layer["op"] for layer in layers) for kind, (_, _, layers) in engines.items()}
    assert ops["named"] == ops["static"] and ops["anonymous"] == ops["static"], ops
    # 20 convs (stem, 16 in blocks, 3 projections) with BatchNorm folded, MaxPool,
    # GlobalAveragePool, Flatten, Gemm; every residual Add and its Relu inside a Conv. Layout
    # Transposes around an NHWC convolution region (the cpu target's, with oneDNN) aside.
    computing = {kind: sum(n for op, n in counter.items() if op != "Transpose")
                 for kind, counter in ops.items()}
    assert computing == {"static": 24, "named": 24, "anonymous": 24}
    for kind, (_, _, layers) in engines.items():
        ops = [layer["op"] for layer in layers]
        assert "Add" not in ops and "Relu" not in ops, (kind, ops)
        residual_convs = [layer for layer in layers if layer["op"] == "Conv" and len(layer["inputs"]) == 4]
        assert len(residual_convs) == 8, kind


@pytest.mark.parametrize("kind", ["named", "anonymous"])
def test_dynamic_engine_matches_static_engine_and_onnxruntime(engines, kind):
    model, path, _ = engines[kind]
    dynamic = kiln.Engine(path.read_bytes())
    static_model, static_path, _ = engines["static"]
    static = kiln.Engine(static_path.read_bytes())
    rng = np.random.default_rng(2)
    for batch in (1, 3, 4):
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        got = dynamic.run({"input": x})["logits"]
        want = run_ort(model, {"input": x})["logits"]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        if batch == 3:
            np.testing.assert_allclose(got, static.run({"input": x})["logits"], rtol=1e-5, atol=1e-6)


def test_inputs_sharing_a_dim_param_fuse_the_residual(tmp_path, kiln_cli):
    model = two_input_block("N", "N")
    path = tmp_path / "same.kiln"
    profiles = {name: ((1, 4, 8, 8), (2, 4, 8, 8), (3, 4, 8, 8)) for name in ("x", "r")}
    path.write_bytes(kiln.build_onnx(model, profiles=profiles))
    layers = layers_of(kiln_cli, path)
    assert [layer["op"] for layer in layers] == ["Conv"]
    rng = np.random.default_rng(3)
    engine = kiln.Engine(path.read_bytes())
    for batch in (1, 3):
        feeds = {name: rng.standard_normal((batch, 4, 8, 8)).astype(np.float32) for name in ("x", "r")}
        np.testing.assert_allclose(engine.run(feeds)["y"], run_ort(model, feeds)["y"], rtol=1e-5, atol=1e-5)
    # Batches that break the model's promise (both are N) fail loudly, naming the residual.
    feeds = {"x": np.zeros((2, 4, 8, 8), np.float32), "r": np.zeros((1, 4, 8, 8), np.float32)}
    with pytest.raises(kiln.InvalidArgumentError, match="residual input"):
        engine.run(feeds)


def test_explain_says_why_a_residual_of_another_symbol_is_not_fused(tmp_path, kiln_cli):
    model = two_input_block("N", "M")
    onnx_path = tmp_path / "other.onnx"
    onnx.save(model, str(onnx_path))
    engine_path = tmp_path / "other.kiln"
    out = cli(kiln_cli, "build", onnx_path, "-o", engine_path, "--explain",
              "--profile", "x:min=1x4x8x8,opt=2x4x8x8,max=3x4x8x8",
              "--profile", "r:min=1x4x8x8,opt=2x4x8x8,max=3x4x8x8")
    reason = "Add's other input 'r' has dims [?M, 4, 8, 8] vs [?N, 4, 8, 8]: cannot prove equal"
    assert "epilogue fusion: 1 epilogue(s) not fused" in out, out
    assert f"node 'conv' (Conv): not fused with 'add' (Add): {reason}" in out, out
    assert [layer["op"] for layer in layers_of(kiln_cli, engine_path)] == ["Conv", "Add", "Relu"]
    # The same record in the engine's metadata, as the Python API builds it.
    engine = kiln.Engine(kiln.build_onnx(model, explain=True, profiles={
        name: ((1, 4, 8, 8), (3, 4, 8, 8)) for name in ("x", "r")}))
    epilogues = engine.metadata["kiln_build"]["explain"]["epilogues"]
    assert epilogues == [{"node": "conv", "op": "Conv", "reader": "add", "reader_op": "Add", "reason": reason}]
    # Unfused, the Add broadcasts a batch of 1 as ONNX Runtime does.
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((3, 4, 8, 8)).astype(np.float32),
             "r": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(engine.run(feeds)["y"], run_ort(model, feeds)["y"], rtol=1e-5, atol=1e-5)


def test_explain_lists_no_epilogue_misses_for_the_fused_resnet(tmp_path, kiln_cli):
    onnx_path = tmp_path / "resnet.onnx"
    onnx.save(resnet18_like("N"), str(onnx_path))
    out = cli(kiln_cli, "build", onnx_path, "-o", tmp_path / "resnet.kiln", "--explain",
              "--profile", "input:min=1x3x32x32,opt=2x3x32x32,max=4x3x32x32")
    assert "epilogue fusion: 0 epilogue(s) not fused" in out, out
