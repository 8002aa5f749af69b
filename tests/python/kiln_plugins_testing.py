"""Helpers for the tests of libkiln_plugins.so (plugins/, tests/python/test_kiln_plugins_*.py):
one-node ONNX models in the plugins' domain, built by kiln with the library loaded, and the same
node in the default domain run by ONNX Runtime as the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

import kiln

DOMAIN = "kiln"
_LOADED: set[str] = set()


def plugin_library(build_dir: Path) -> str:
    path = build_dir / "lib" / "libkiln_plugins.so"
    assert path.is_file(), f"{path} not built (target kiln_plugins)"
    return str(path)


def load(build_dir: Path) -> str:
    path = plugin_library(build_dir)
    if path not in _LOADED:
        assert kiln.load_plugin_library(path) == path
        _LOADED.add(path)
    return path


def one_node_model(op: str, inputs: dict, outputs: list[str], attrs: dict, *, domain: str = DOMAIN,
                   constants: dict | None = None, opset: int = 19) -> onnx.ModelProto:
    """A model of one node `op`. `inputs` maps a graph input's name to an array (its dtype and shape
    make the input's type; None: an absent optional input, ""); `constants` become initializers."""
    constants = constants or {}
    names, graph_inputs = [], []
    for name, value in inputs.items():
        if value is None:
            names.append("")
            continue
        names.append(name)
        if name not in constants:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
    node = helper.make_node(op, names, outputs, domain=domain, name="node", **attrs)
    graph = helper.make_graph([node], op, graph_inputs,
                              [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
                              initializer=[numpy_helper.from_array(v, name) for name, v in constants.items()])
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports)


def run_kiln(build_dir: Path, op: str, inputs: dict, outputs: list[str], attrs: dict, *,
             constants: dict | None = None) -> dict:
    """Builds the one-node model with the plugin library loaded and runs it on the CPU."""
    load(build_dir)
    model = one_node_model(op, inputs, outputs, attrs, constants=constants)
    engine = kiln.Engine(kiln.build_onnx(model))
    constants = constants or {}
    feeds = {k: v for k, v in inputs.items() if v is not None and k not in constants}
    return engine.run(feeds)


def run_ort(op: str, inputs: dict, outputs: list[str], attrs: dict, *, opset: int = 19) -> list:
    """The same node in the default domain, run by ONNX Runtime."""
    import onnxruntime as ort

    model = one_node_model(op, inputs, outputs, attrs, domain="", opset=opset)
    for out in model.graph.output:  # ORT wants typed outputs only when it cannot infer them
        out.ClearField("type")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {k: v for k, v in inputs.items() if v is not None}
    return session.run(outputs, feeds)
