"""Shape arithmetic on static shapes is done at build time (builder.cpp folds constants while it
infers shapes): a Reshape whose target comes from Shape -> Size -> Sub -> ConstantOfShape -> Concat,
as ONNX's function expansions write it (LayerNormalization's), builds, with no node of the
arithmetic left in the engine."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import kiln


def test_reshape_target_computed_from_static_shapes_builds(tmp_path, kiln_cli):
    i64 = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Size", ["shape"], ["rank"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["prefix"]),
        helper.make_node("Sub", ["rank", "one"], ["suffix_rank"]),
        helper.make_node("ConstantOfShape", ["suffix_rank"], ["suffix"],
                         value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Concat", ["prefix", "suffix"], ["reduced_shape"], axis=0),
        helper.make_node("ReduceMean", ["x", "inner_axes"], ["mean"], keepdims=0),
        helper.make_node("Reshape", ["mean", "reduced_shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[i64("zero", [0]), i64("one", [1]), i64("inner_axes", [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    engine_bytes = kiln.build_onnx(model.SerializeToString(), target="cpu")
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    y = kiln.Engine(engine_bytes).run({"x": x})["y"]
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)).reshape(3, 1, 1), rtol=1e-6)
    path = tmp_path / "e.kiln"
    path.write_bytes(engine_bytes)
    info = json.loads(subprocess.run([str(kiln_cli), "inspect", "--json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)
    ops = {layer["op"] for layer in info["layers"]}
    assert not {"Shape", "Size", "Sub", "ConstantOfShape", "Concat", "Slice"} & ops, ops
