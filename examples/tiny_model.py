"""Writes the tiny ONNX model the C and C++ API examples run: y = Relu(x @ W + b).

x is float32 [batch, 4] with a dynamic batch dimension, W is [4, 3], b is [3]; the weights are
fixed so every run writes the same model. Needs the `onnx` package (installed by `make setup`).

usage: python examples/tiny_model.py [OUT.onnx]   (default out/examples/tiny.onnx)
"""

from __future__ import annotations

import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save


def tiny_model():
    weight = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0 - 0.5).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
            helper.make_node("Add", ["xw", "b"], ["z"], name="add"),
            helper.make_node("Relu", ["z"], ["y"], name="relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "out/examples/tiny.onnx"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(tiny_model(), path)
    print(path)
