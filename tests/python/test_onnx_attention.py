"""ONNX Attention (opset 23) on the CPU backend: every opset-23 node test case of the onnx
package's backend suite (onnx.backend.test.case.node.attention, their expected outputs from
onnx.reference) run three ways: by the Attention CPU kernel (a plain CPU build), through the
builder's lowering to plain ops, and lowered then fused as far as the CPU rules fuse it (the
builder's test hook, kiln_attention_preview.py). bfloat16 cases run behind float32 bindings with
Casts, since kiln's Python API has no bfloat16 arrays. Then the CUDA conformance tuples
(cuda_cases_attention.py) against ONNX Runtime, named errors for what kiln rejects, and dynamic
shapes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.backend.test.case import node as backend_nodes
from onnx.reference import ReferenceEvaluator

import kiln
import kiln_attention_preview as preview
from cuda_cases_attention import CASES as TUPLES
from kiln_testing import assert_outputs_match, case_from_tuple, run_kiln, run_ort


def _opset23_cases():
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        cases = backend_nodes.collect_testcases("Attention")
    return [c for c in cases if not c.name.endswith("_expanded")
            and [o.version for o in c.model.opset_import if o.domain in ("", "ai.onnx")] == [23]]


CASES = _opset23_cases()


def _float32_bindings(model: onnx.ModelProto) -> onnx.ModelProto:
    """bfloat16 inputs and outputs behind float32 bindings and Casts."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    casts = []
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type != TensorProto.BFLOAT16:
            continue
        value.type.tensor_type.elem_type = TensorProto.FLOAT
        is_input = any(value is i for i in graph.input)
        inner = value.name + "_bf16"
        for node in graph.node:
            names = node.input if is_input else node.output
            for i, name in enumerate(names):
                if name == value.name:
                    names[i] = inner
        casts.append((is_input, helper.make_node(
            "Cast", [value.name if is_input else inner], [inner if is_input else value.name],
            to=TensorProto.BFLOAT16 if is_input else TensorProto.FLOAT)))
    nodes = [c for is_input, c in casts if is_input] + list(graph.node) + \
        [c for is_input, c in casts if not is_input]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def _binding(x: np.ndarray) -> np.ndarray:
    """bfloat16 arrays (ml_dtypes) as float32, which holds them exactly; the rest as they are."""
    return x.astype(np.float32) if "bfloat16" in str(x.dtype) else x


def test_the_suite_has_the_opset23_cases():
    assert len(CASES) >= 69, [c.name for c in CASES]


@pytest.mark.parametrize("path", ["kernel", "lowered", "fused"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_backend_case(case, path):
    model = case.model
    bf16 = any(i.type.tensor_type.elem_type == TensorProto.BFLOAT16 for i in model.graph.input)
    if bf16:
        model = _float32_bindings(model)
    data = model.SerializeToString()
    if path == "kernel":
        engine = kiln.build_onnx(data)
    else:
        engine = preview.build(data, "fp32", "lowered" if path == "lowered" else "any")
        ops = [layer["op"] for layer in preview.layers(engine)]
        assert "Attention" not in ops, ops
    outputs = kiln.Engine(engine).run({i.name: _binding(x) for i, x in
                                       zip(model.graph.input, case.data_sets[0][0])})
    half = bf16 or any(i.type.tensor_type.elem_type == TensorProto.FLOAT16 for i in model.graph.input)
    tolerance = 2e-2 if half else 1e-4
    for info, want in zip(model.graph.output, case.data_sets[0][1]):
        got = outputs[info.name].astype(np.float32)
        want = want.astype(np.float32)
        assert got.shape == want.shape, info.name
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, err_msg=info.name)


# ---- the CUDA conformance tuples against ONNX Runtime --------------------------------------------

TUPLE_CASES = [case_from_tuple(entry) for entry in TUPLES]


@pytest.mark.parametrize("case", TUPLE_CASES, ids=[c.id for c in TUPLE_CASES])
def test_conformance_tuple_matches_onnxruntime(case):
    model = case.model()
    half = any(x.dtype == np.float16 for x in case.feeds.values())
    assert_outputs_match(run_kiln(model, case.feeds), run_ort(model, case.feeds),
                         rtol=2e-2 if half else 1e-4, atol=2e-2 if half else 1e-5)


# ---- what kiln rejects ----------------------------------------------------------------------

def _attention(opset=23, mask_type=None, extra_inputs=0, **attrs) -> bytes:
    names = ["Q", "K", "V"] + (["attn_mask"] if mask_type is not None else [])
    names += ["x%d" % i for i in range(extra_inputs)]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 8]) for n in names[:3]]
    if mask_type is not None:
        inputs.append(helper.make_tensor_value_info("attn_mask", mask_type, [4, 4]))
    for i in range(extra_inputs):
        inputs.append(helper.make_tensor_value_info("x%d" % i, TensorProto.INT64, [1]))
    node = helper.make_node("Attention", names, ["Y"], name="attn_node", **attrs)
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model.SerializeToString()


@pytest.mark.parametrize("model, fragment", [
    (_attention(opset=22), "needs ai.onnx opset 23"),
    (_attention(mask_type=TensorProto.INT32), "attn_mask has dtype int32"),
    (_attention(softmax_precision=TensorProto.INT8), "softmax_precision"),
])
def test_unsupported_forms_fail_naming_the_node(model, fragment):
    with pytest.raises(kiln.UnsupportedError) as info:
        kiln.build_onnx(model)
    assert "attn_node" in str(info.value) and fragment in str(info.value), str(info.value)


# ---- opset 24/25: nonpad_kv_seqlen, the sliding window, a mask shorter than the keys ----------

def _window_model(q_len, kv_len, *, causal=0, left=-1, right=-1, nonpad=False, mask_keys=None, rank=4,
                  heads=(2, 2), head=8) -> bytes:
    qh, kvh = heads
    shape = (lambda h, s: [2, h, s, head]) if rank == 4 else (lambda h, s: [2, s, h * head])
    names = ["Q", "K", "V", "attn_mask" if mask_keys else "", "", "", "nonpad" if nonpad else ""]
    while names and not names[-1]:
        names.pop()
    inputs = [helper.make_tensor_value_info("Q", TensorProto.FLOAT, shape(qh, q_len)),
              helper.make_tensor_value_info("K", TensorProto.FLOAT, shape(kvh, kv_len)),
              helper.make_tensor_value_info("V", TensorProto.FLOAT, shape(kvh, kv_len))]
    if mask_keys:
        inputs.append(helper.make_tensor_value_info("attn_mask", TensorProto.FLOAT, [q_len, mask_keys]))
    if nonpad:
        inputs.append(helper.make_tensor_value_info("nonpad", TensorProto.INT64, [2]))
    attrs = dict(is_causal=causal, left_window_size=left, right_window_size=right)
    if rank == 3:
        attrs.update(q_num_heads=qh, kv_num_heads=kvh)
    node = helper.make_node("Attention", names, ["Y"], name="window_node", **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    model.ir_version = 11
    return model.SerializeToString()


WINDOW_CASES = {
    "left_window": dict(q_len=5, kv_len=5, left=2),
    "left_window_causal": dict(q_len=5, kv_len=5, left=1, causal=1),
    "both_sides": dict(q_len=4, kv_len=6, left=1, right=2),
    "nonpad": dict(q_len=3, kv_len=7, nonpad=True),
    "nonpad_causal": dict(q_len=3, kv_len=7, nonpad=True, causal=1),
    "nonpad_causal_window_gqa": dict(q_len=2, kv_len=6, nonpad=True, causal=1, left=2, heads=(4, 2)),
    "nonpad_rank3": dict(q_len=3, kv_len=5, nonpad=True, causal=1, rank=3),
    "short_mask": dict(q_len=4, kv_len=6, mask_keys=4),
    "short_mask_causal_window": dict(q_len=4, kv_len=6, mask_keys=5, causal=1, left=3),
}


@pytest.mark.parametrize("name", list(WINDOW_CASES))
def test_windows_nonpad_and_short_masks_match_the_onnx_reference(name):
    from onnx.reference import ReferenceEvaluator

    model = _window_model(**WINDOW_CASES[name])
    proto = onnx.load_from_string(model)
    rng = np.random.default_rng(11)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in proto.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    if "nonpad" in feeds or any(i.name == "nonpad" for i in proto.graph.input):
        # One batch with a negative offset (fewer valid keys than queries: leading rows see nothing).
        kv_len = WINDOW_CASES[name]["kv_len"]
        feeds["nonpad"] = np.array([kv_len - 1, 1], np.int64)
    want = ReferenceEvaluator(proto).run(None, feeds)[0]
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(feeds)["Y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, np.nan_to_num(want, nan=0.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, length, fragment", [
    (TensorProto.INT32, 2, "input 6 (nonpad_kv_seqlen) must be int64, got int32"),
    (TensorProto.INT64, 3, "input 6 (nonpad_kv_seqlen) [3] must be [batch 2]"),
])
def test_malformed_nonpad_is_invalid_naming_it(dtype, length, fragment):
    model = onnx.load_from_string(_window_model(q_len=3, kv_len=5, nonpad=True))
    model.graph.input[3].CopyFrom(helper.make_tensor_value_info("nonpad", dtype, [length]))
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(model.SerializeToString())
    assert "window_node" in str(info.value) and fragment in str(info.value), str(info.value)


def test_nonpad_with_a_past_cache_is_invalid():
    names = ["Q", "K", "V", "", "past_key", "past_value", "nonpad"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 8]) for n in ("Q", "K", "V")]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 3, 8]) for n in ("past_key", "past_value")]
    inputs.append(helper.make_tensor_value_info("nonpad", TensorProto.INT64, [1]))
    node = helper.make_node("Attention", names, ["Y"], name="cached_node")
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])
    model.ir_version = 10
    with pytest.raises(kiln.InvalidArgumentError, match="cached_node.*nonpad_kv_seqlen.*cannot be combined"):
        kiln.build_onnx(model.SerializeToString())


@pytest.mark.parametrize("case", ["left_window", "nonpad", "short_mask"])
def test_cuda_builds_keep_windows_and_nonpad_as_host_layers(case, tmp_path):
    # The CUDA lowering (into the ops the fused kernel is matched from) does not take these yet:
    # the node stays an Attention layer, which a CUDA engine runs on the host (listed), or which
    # allow_host_layers=False refuses by name.
    model = _window_model(**WINDOW_CASES[case])
    try:
        engine = kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off")
    except kiln.KilnError as error:
        if any(word in str(error) for word in ("NVRTC", "nvrtc", "without CUDA")):
            pytest.skip(f"no CUDA build here: {str(error)[:120]}")
        raise
    try:
        kiln.Engine(engine)  # no GPU here: what matters is why it does not load
    except kiln.KilnError as error:
        if "built without CUDA" in str(error):
            pytest.skip("this kiln has no CUDA backend, so no CUDA kernels to place the layers by")
    path = tmp_path / "window.kiln"
    path.write_bytes(engine)
    cli = Path(os.environ.get("KILN_BUILD_DIR", Path(__file__).resolve().parents[2] / "build")) / "bin" / "kiln"
    info = json.loads(subprocess.run([str(cli), "inspect", "--json", str(path)], check=True, capture_output=True,
                                     text=True).stdout)
    assert info["metadata"]["kiln_build"]["host_layers"] == [
        "layer 'window_node' (op 'Attention'): the cuda backend has no kernel for op 'Attention'"]
    with pytest.raises(kiln.UnsupportedError, match=r"layer 'window_node' \(op 'Attention'\)"):
        kiln.build_onnx(model, target="cuda", cuda_arch=90, kernel_cache="off", allow_host_layers=False)


def test_invalid_attributes_fail_naming_the_node():
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(_attention(qk_matmul_output_mode=5))
    assert "attn_node" in str(info.value) and "qk_matmul_output_mode" in str(info.value)


# ---- dynamic shapes -------------------------------------------------------------------------

def _dynamic_model() -> bytes:
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], name="attention", is_causal=1,
                            q_num_heads=2, kv_num_heads=2)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", "S", 16]) for n in "QKV"]
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("path", ["kernel", "lowered"])
def test_dynamic_batch_and_length(path):
    model = _dynamic_model()
    if path == "kernel":
        profile = ([1, 1, 16], [2, 8, 16], [4, 32, 16])
        engine = kiln.Engine(kiln.build_onnx(model.SerializeToString(),
                                             profiles={n: profile for n in "QKV"}))
    else:  # the causal mask built from the run-time lengths (Trilu), as CUDA engines do
        engine_bytes = preview.build(model, "fp32", "lowered")
        assert "Trilu" in [layer["op"] for layer in preview.layers(engine_bytes)]
        engine = kiln.Engine(engine_bytes)
    reference = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    for batch, length in ((1, 3), (4, 17), (2, 32)):
        feeds = {n: rng.standard_normal((batch, length, 16)).astype(np.float32) for n in "QKV"}
        np.testing.assert_allclose(engine.run(feeds)["Y"], reference.run(None, feeds)[0],
                                   rtol=1e-4, atol=1e-5)
