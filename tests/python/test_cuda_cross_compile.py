"""Cuda engines cross-compiled without a GPU (cuda_arch): the whole cuda pipeline (grouping, code
generation, NVRTC) runs here, so CI checks that real graphs group into generated kernels that
compile. The engines are not run (no GPU); tests/gpu runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

REPO = Path(__file__).resolve().parents[2]
KILN_CLI = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"


def _nvrtc_missing() -> str:
    try:
        kiln.build_onnx(_tiny_model(), target="cuda", cuda_arch=90, kernel_cache="off")
    except kiln.KilnError as error:
        if "NVRTC" in str(error) or "nvrtc" in str(error):
            return str(error)
        raise
    return ""


def _tiny_model():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _encoder_block(batch="batch", seq=16, hidden=64, heads=4):
    """A transformer encoder block as exporters write it: LayerNorm, QKV projections, attention with
    a mask, output projection, residual, LayerNorm, GELU MLP (erf form), residual."""
    rng = np.random.default_rng(0)
    f = lambda *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1)  # noqa: E731
    inits, nodes = [], []

    def const(name, array):
        t = numpy_helper.from_array(np.asarray(array), name)
        inits.append(t)
        return name

    def op(kind, inputs, **attrs):
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def linear(x, n_in, n_out):
        w = const(f"w{len(inits)}", rng.standard_normal((n_in, n_out)).astype(np.float32) * 0.1)
        b = const(f"b{len(inits)}", rng.standard_normal(n_out).astype(np.float32) * 0.1)
        return op("Add", [op("MatMul", [x, w]), b])

    head = hidden // heads
    x = "x"
    ln1 = op("LayerNormalization", [x, const("g1", np.ones(hidden, np.float32)), const("b1", np.zeros(hidden, np.float32))],
             axis=-1, epsilon=1e-5)
    shape = const("split_shape", np.array([0, 0, heads, head], np.int64))
    q, k, v = (op("Transpose", [op("Reshape", [linear(ln1, hidden, hidden), shape])], perm=[0, 2, 1, 3])
               for _ in range(3))
    scores = op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = op("Add", [op("Mul", [scores, const("scale", np.array(head ** -0.5, np.float32))]), "mask"])
    ctx = op("MatMul", [op("Softmax", [scores], axis=-1), v])
    ctx = op("Reshape", [op("Transpose", [ctx], perm=[0, 2, 1, 3]), const("merge", np.array([0, 0, hidden], np.int64))])
    h = op("Add", [x, linear(ctx, hidden, hidden)])
    ln2 = op("LayerNormalization", [h, const("g2", np.ones(hidden, np.float32)), const("b2", np.zeros(hidden, np.float32))],
             axis=-1, epsilon=1e-5)
    up = linear(ln2, hidden, 4 * hidden)
    gelu = op("Mul", [op("Mul", [up, op("Add", [op("Erf", [op("Div", [up, const("rt2", np.array(1.4142135, np.float32))])]),
                                                 const("one", np.array(1.0, np.float32))])]),
                      const("half", np.array(0.5, np.float32))])
    y = op("Add", [h, linear(gelu, 4 * hidden, hidden)])
    nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, seq, hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [batch, 1, 1, seq])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq, hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.fixture(scope="module")
def nvrtc():
    reason = _nvrtc_missing()
    if reason:
        pytest.skip(f"NVRTC is not available here: {reason}")


def _inspect(engine: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "engine.kiln"
    path.write_bytes(engine)
    out = subprocess.run([str(KILN_CLI), "inspect", "--json", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_encoder_block_groups_into_generated_kernels(nvrtc, precision, tmp_path):
    profiles = {"x": [(1, 16, 64), (2, 16, 64), (8, 16, 64)], "mask": [(1, 1, 1, 16), (2, 1, 1, 16), (8, 1, 1, 16)]}
    engine = kiln.build_onnx(_encoder_block(), target="cuda", precision=precision, cuda_arch=90,
                             profiles=profiles, kernel_cache=str(tmp_path / "kernels"), explain=True)
    info = _inspect(engine, tmp_path)
    ops = [layer["op"] for layer in info["layers"]]
    # Every pointwise op and normalisation is in a generated kernel; GEMMs and views remain.
    assert "FusedGroup" in ops
    assert not {"Add", "Mul", "Div", "Erf", "LayerNormalization", "Softmax", "Cast"} & set(ops), ops
    modules = {m["name"] for m in info["kernels"]}
    used = {layer["attributes"]["kiln_kernel"] for layer in info["layers"] if layer["op"] == "FusedGroup"}
    assert used and used <= modules
    assert info["target"]["sm_arch"] == 90 if isinstance(info["target"], dict) else True
    # The explanation names a group for every grouped node.
    explain = info["metadata"]["kiln_build"]["explain"]
    assert explain["fusion"]["groups"] == ops.count("FusedGroup")
    grouped = [d for d in explain["fusion"]["decisions"] if d.get("group")]
    assert len(grouped) == explain["fusion"]["members"]


def test_kernel_cache_makes_the_second_build_compile_nothing(nvrtc, tmp_path):
    cache = tmp_path / "kernels"
    first = kiln.build_onnx(_encoder_block(batch=2), target="cuda", precision="fp16", cuda_arch=90, kernel_cache=str(cache))
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries, "the first build stored its cubins"
    second = kiln.build_onnx(_encoder_block(batch=2), target="cuda", precision="fp16", cuda_arch=90, kernel_cache=str(cache))
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries
    assert first == second  # same kernels from the cache, same engine bytes


def test_cross_compile_rejects_a_bad_architecture():
    with pytest.raises(kiln.KilnError, match="cuda_arch"):
        kiln.build_onnx(_tiny_model(), target="cuda", cuda_arch=7)


def _mbconv_block(channels=16, expanded=64, size=14):
    """An inverted residual block as exporters write EfficientNet's (batch norms folded into the
    convs): 1x1 expand conv + SiLU (Sigmoid and Mul), depthwise 3x3 conv + SiLU, 1x1 project conv,
    residual Add."""
    rng = np.random.default_rng(1)
    inits, nodes = [], []

    def const(name, shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name))
        return name

    def op(kind, inputs, **attrs):
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def silu(v):
        return op("Mul", [v, op("Sigmoid", [v])])

    x = "x"
    h = silu(op("Conv", [x, const("we", (expanded, channels, 1, 1)), const("be", (expanded,))], kernel_shape=[1, 1]))
    h = silu(op("Conv", [h, const("wd", (expanded, 1, 3, 3)), const("bd", (expanded,))], kernel_shape=[3, 3],
                pads=[1, 1, 1, 1], group=expanded))
    y = op("Add", [op("Conv", [h, const("wp", (channels, expanded, 1, 1)), const("bp", (channels,))],
                      kernel_shape=[1, 1]), x])
    graph = helper.make_graph(nodes, "mbconv", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [8, channels, size, size])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_conv_biases_and_residuals_go_into_generated_kernels(nvrtc, layout, tmp_path, monkeypatch):
    # cuDNN would add these biases (no ReLU follows) and the residual in passes of their own; the
    # 1x1 convs give them to the generated kernels of the SiLU and the block's output instead. The
    # depthwise conv keeps its bias (kiln's depthwise kernel adds it).
    monkeypatch.setenv("KILN_CONV_LAYOUT", layout)
    engine = kiln.build_onnx(_mbconv_block(), target="cuda", precision="fp16", cuda_arch=90,
                             kernel_cache=str(tmp_path / "kernels"), explain=True)
    info = _inspect(engine, tmp_path)
    convs = [layer for layer in info["layers"] if layer["op"] == "Conv"]
    assert len(convs) == 3, [layer["op"] for layer in info["layers"]]
    present = [[i for i in layer["inputs"] if i] for layer in convs]
    depthwise = [c for c, inputs in zip(convs, present) if c["inputs"][1]["shape"][1 if layout == "nchw" else -1] == 1]
    assert len(depthwise) == 1
    for conv, inputs in zip(convs, present):
        expected = 3 if conv is depthwise[0] else 2
        assert len(inputs) == expected, (conv["name"], [i["name"] for i in inputs])
    passes = {p["pass"]: p for p in info["metadata"]["kiln_build"]["explain"]["passes"]}
    assert passes["conv_bias_epilogue"]["changes"] == 2
    assert not {"Add", "Mul", "Sigmoid"} & {layer["op"] for layer in info["layers"]}


def _squeeze_excitation(batch=32, size=56, channels=32):
    """EfficientNet's squeeze-excitation in NHWC as the layout pass leaves it: SiLU, its mean over H
    and W, a gate, and the SiLU output scaled by the gate."""
    rng = np.random.default_rng(2)
    gate_w = numpy_helper.from_array((rng.standard_normal((channels, channels)) * 0.1).astype(np.float32), "gw")
    axes = numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")
    nodes = [helper.make_node("Sigmoid", ["x"], ["sig"]), helper.make_node("Mul", ["x", "sig"], ["silu"]),
             helper.make_node("ReduceMean", ["silu", "axes"], ["mean"], keepdims=1),
             helper.make_node("MatMul", ["mean", "gw"], ["gate_in"]), helper.make_node("Sigmoid", ["gate_in"], ["gate"]),
             helper.make_node("Mul", ["silu", "gate"], ["y"])]
    shape = [batch, size, size, channels]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [gate_w, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_a_column_reduction_beside_its_stored_input_gets_split_entries(nvrtc, tmp_path):
    # The SiLU output is stored and averaged over 56 x 56 rows with only batch x channels columns:
    # entries that split the rows across blocks keep the GPU busy (the first sweep stores the SiLU
    # output slice by slice), beside the plain column entries.
    engine = kiln.build_onnx(_squeeze_excitation(), target="cuda", precision="fp16", cuda_arch=90,
                             kernel_cache=str(tmp_path / "kernels"))
    info = _inspect(engine, tmp_path)
    reducing = [layer["attributes"] for layer in info["layers"]
                if layer["op"] == "FusedGroup" and layer["attributes"].get("kiln_kernel_split_rows")]
    assert len(reducing) == 1, [layer["op"] for layer in info["layers"]]
    entries = reducing[0]["kiln_kernel_entries"]
    assert any(e.endswith("_split_i32") for e in entries) and any("_split" not in e for e in entries), entries
    assert reducing[0]["kiln_kernel_split_rows"] == [56, 56]
    assert len(reducing[0]["kiln_kernel_space"]) == 4


def _runtime_has_cuda() -> bool:
    """Whether this kiln was built with its CUDA backend (CI's sanitizer builds are not): a runtime
    without it cannot know which ops have CUDA kernels, and says so when given a cuda engine."""
    engine = kiln.build_onnx(_tiny_model(), target="cuda", cuda_arch=90, kernel_cache="off")
    try:
        kiln.Engine(engine)
    except kiln.KilnError as error:
        return "built without CUDA" not in str(error)
    return True


def _cumprod_model():
    axis = numpy_helper.from_array(np.array(0, dtype=np.int64), "axis")
    graph = helper.make_graph([helper.make_node("CumProd", ["x", "axis"], ["y"], name="running_product"),
                               helper.make_node("Relu", ["y"], ["z"], name="after")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 5])], [axis])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26)])


def test_a_layer_no_cuda_kernel_takes_runs_on_the_host_and_is_listed(nvrtc, tmp_path):
    # CumProd has a CPU kernel and no CUDA one (yet; pick another such op when it gets one): the
    # build checks what a load checks without a GPU and lists the layer the engine will run on the
    # host, with the reason, in the metadata; the Relu after it stays on the GPU.
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
    engine = kiln.build_onnx(_cumprod_model(), target="cuda", cuda_arch=90, kernel_cache="off")
    host = _inspect(engine, tmp_path)["metadata"]["kiln_build"]["host_layers"]
    assert host == ["layer 'running_product' (op 'CumProd'): the cuda backend has no kernel for op 'CumProd'"]


def test_the_cli_warns_about_host_layers_and_can_refuse_them(nvrtc, tmp_path):
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
    import onnx
    onnx.save(_cumprod_model(), tmp_path / "m.onnx")
    base = [str(KILN_CLI), "build", str(tmp_path / "m.onnx"), "--target", "cuda", "--cuda-arch", "90",
            "--kernel-cache", "off", "-o", str(tmp_path / "m.kiln")]
    built = subprocess.run(base, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "warning: 1 layer(s) run on the host" in built.stderr
    assert "layer 'running_product' (op 'CumProd')" in built.stderr
    inspected = subprocess.run([str(KILN_CLI), "inspect", str(tmp_path / "m.kiln")], capture_output=True, text=True,
                               check=True).stdout
    assert "host layers (1; no cuda kernel takes them):\n  layer 'running_product' (op 'CumProd')" in inspected
    refused = subprocess.run(base + ["--no-host-layers"], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "host layers are not allowed" in refused.stderr and "running_product" in refused.stderr


def test_allow_host_layers_false_fails_the_cross_compile_naming_the_layer(nvrtc):
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend, so no list of CUDA kernels to check against")
    model = _cumprod_model()
    assert kiln.build_onnx(model, target="cpu")  # the CPU runs it
    with pytest.raises(kiln.UnsupportedError, match=r"host layers are not allowed \(allow_host_layers\):\n"
                                                    r"  layer 'running_product' \(op 'CumProd'\): the cuda backend "
                                                    r"has no kernel for op 'CumProd'$"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)


def test_a_host_layer_with_data_dependent_shapes_is_listed_or_refused_by_name(nvrtc, tmp_path):
    # NonZero's output size depends on its input data. The cuda backend plans such layers segment
    # by segment (as plugin layers use it) but has no NonZero kernel: the host runs it.
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend, so it cannot check a cuda engine")
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="where_nonzero")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [2, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off")
    assert _inspect(engine, tmp_path)["metadata"]["kiln_build"]["host_layers"] == [
        "layer 'where_nonzero' (op 'NonZero'): the cuda backend has no kernel for op 'NonZero'"]
    with pytest.raises(kiln.UnsupportedError, match=r"host layers are not allowed \(allow_host_layers\):\s+"
                                                    r"layer 'where_nonzero' \(op 'NonZero'\)"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, allow_host_layers=False)


def test_an_engine_whose_shapes_depend_on_input_values_cross_compiles(nvrtc, tmp_path):
    # Expand to a shape fed as an input: the cuda backend plans from the input's value at run time
    # (tests/gpu/test_cuda_value_shapes.py runs it); the build no longer refuses it.
    if not _runtime_has_cuda():
        pytest.skip("this kiln has no CUDA backend, so it cannot check a cuda engine")
    graph = helper.make_graph([helper.make_node("Expand", ["x", "shape"], ["y"], name="grow"),
                               helper.make_node("Relu", ["y"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)
    assert "host_layers" not in _inspect(engine, tmp_path)["metadata"]["kiln_build"]
