"""Helpers shared by kiln's Python tests: single-node ONNX models, running them on ONNX Runtime
and kiln, and comparing the results."""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

import kiln

CONST_PREFIX = "c_"  # inputs whose name starts with this become initializers


@dataclass
class OpCase:
    """One model to check: `nodes` over graph inputs `feeds` (runtime) and `consts`
    (initializers). Outputs are the names in `outputs`; their types come from ONNX shape
    inference."""

    id: str
    nodes: list
    feeds: dict
    consts: dict = field(default_factory=dict)
    outputs: list = field(default_factory=lambda: ["y"])
    opset: int = 17
    rtol: float = 1e-5
    atol: float = 1e-6

    def model(self) -> onnx.ModelProto:
        graph_inputs = [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
            for name, value in self.feeds.items()
        ]
        initializers = [numpy_helper.from_array(np.asarray(v), name) for name, v in self.consts.items()]
        graph = helper.make_graph(self.nodes, self.id.replace("-", "_"), graph_inputs,
                                  [onnx.ValueInfoProto(name=n) for n in self.outputs],
                                  initializer=initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="kiln-tests")
        # ONNX Runtime 1.32 reads IR version <= 11; newer onnx packages write 12+ by default.
        model.ir_version = min(model.ir_version, 10)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for output in model.graph.output:
            # ONNX infers no shape for GroupNormalization (a function op): type it like input 0.
            if not output.type.HasField("tensor_type") and graph_inputs:
                output.type.CopyFrom(graph_inputs[0].type)
        onnx.checker.check_model(model, full_check=True)
        return model


def node_case(case_id: str, op: str, inputs, attrs=None, *, opset=17, num_outputs=1,
              rtol=1e-5, atol=1e-6) -> OpCase:
    """A single-node case. `inputs` is a list of (name, array) pairs, or None for an absent
    optional input; names starting with "c_" become initializers."""
    input_names = []
    feeds, consts = {}, {}
    for item in inputs:
        if item is None:
            input_names.append("")
            continue
        name, value = item
        input_names.append(name)
        (consts if name.startswith(CONST_PREFIX) else feeds)[name] = np.asarray(value)
    outputs = ["y"] if num_outputs == 1 else [f"y{i}" for i in range(num_outputs)]
    node = helper.make_node(op, input_names, outputs, name=f"{op.lower()}_node", **(attrs or {}))
    return OpCase(case_id, [node], feeds, consts, outputs, opset, rtol, atol)


def _random_array(dtype: str, shape, rng) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(-5, 6, size=shape).astype(dtype)


def case_from_tuple(entry) -> OpCase:
    """A single-node case from a compact tuple (the format of tests/python/cuda_cases_*.py):
    (case_id, onnx_op, inputs, attrs, opset[, num_outputs]). An input is (name, dtype, shape) for a
    random runtime input (floats uniform in [-2, 2], integers in [-5, 5], seeded by the case id so
    every process draws the same values), (name, dtype, values, "values") for a runtime input with
    exactly these values (NaN, infinities, denormals), (name, dtype, values, "const") for an
    initializer, or None for an absent optional input."""
    case_id, op, inputs, attrs, opset, *rest = entry
    num_outputs = rest[0] if rest else 1
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    named = []
    for item in inputs:
        if item is None:
            named.append(None)
        elif len(item) == 4 and item[3] == "const":
            name, dtype, values, _ = item
            named.append((CONST_PREFIX + name, np.array(values, dtype=np.dtype(dtype))))
        elif len(item) == 4 and item[3] == "values":
            name, dtype, values, _ = item
            named.append((name, np.array(values, dtype=np.dtype(dtype))))
        else:
            name, dtype, shape = item
            named.append((name, _random_array(dtype, shape, rng)))
    # Reductions over thousands of elements: the GPU sums in float32, the CPU reference in double.
    atol = 1e-3 if op.startswith("Reduce") else 1e-6
    return node_case(case_id, op, named, attrs, opset=opset, num_outputs=num_outputs, atol=atol)


def run_ort(model: onnx.ModelProto, feeds: dict) -> dict:
    options = ort.SessionOptions()
    # Reference semantics of each op, not ORT's fused rewrites.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def run_kiln(model: "onnx.ModelProto | bytes | str", feeds: dict, **build_options) -> dict:
    engine = kiln.Engine(kiln.build_onnx(model, **build_options))
    return engine.run(feeds)


def assert_outputs_match(got: dict, want: dict, rtol: float, atol: float) -> None:
    assert list(got) == list(want), f"output names: kiln {list(got)}, onnxruntime {list(want)}"
    for name, ref in want.items():
        out = got[name]
        assert out.dtype == ref.dtype, f"{name}: dtype kiln {out.dtype}, onnxruntime {ref.dtype}"
        assert out.shape == ref.shape, f"{name}: shape kiln {out.shape}, onnxruntime {ref.shape}"
        if np.issubdtype(ref.dtype, np.floating):
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(out, ref, err_msg=name)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (max |got - want| when want is all zeros)."""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    return err / scale if scale > 0 else err


def python_child_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child Python process that loads kiln's libraries: under CI's ASan stage the
    sanitizer preload (KILN_SANITIZER_PRELOAD, which conftest.py keeps from children) added back.
    Here rather than in conftest.py, whose name tests/gpu's own conftest shadows."""
    preload = os.environ.get("KILN_SANITIZER_PRELOAD", "")
    return {**env, "LD_PRELOAD": preload} if preload else env


def rss_bytes() -> int:
    """The process's resident set (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_run_and_check(engine_bytes: bytes, feeds: dict, first: dict) -> tuple:
    """One soak cycle's start: loads an engine, runs `feeds` and checks the result is the first
    cycle's (kept in `first["y"]`, set by the first call). Returns the open engine and the result."""
    import numpy as np

    engine = kiln.Engine(engine_bytes)
    got = engine.run(feeds)["y"]
    first.setdefault("y", got)
    np.testing.assert_array_equal(got, first["y"])
    return engine, got


@functools.lru_cache(maxsize=None)
def cuda_backend_present() -> bool:
    """Whether this kiln can build cuda engines (CI's sanitizer builds have no CUDA backend; a
    machine without NVRTC cannot generate kernels): a cross-compiled one-Relu engine loads, or its
    error is not one of those two."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    relu = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        kiln.Engine(kiln.build_onnx(relu, target="cuda", cuda_arch=90, kernel_cache="off"))
    except kiln.KilnError as error:
        return not any(word in str(error) for word in ("built without CUDA", "NVRTC", "nvrtc"))
    return True
