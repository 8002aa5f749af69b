"""Writes format_1_0_cpu.kiln (+ its input and expected output) next to this script.

The files were made ONCE, with the kiln that wrote engine format 1.0 (before the `kernels`
section and format 1.1), and are committed: tests/python/test_format_compat.py loads them with
the current runtime to prove that old engines keep loading and computing the same numbers.
Running this script again with a newer kiln writes a newer format, so it refuses to unless
--force is given (for a deliberate refresh of the fixture, which then tests nothing old).

The model is small (under 8 KB) but covers the usual CPU layers: Conv (+ residual Add + Relu
fused by the builder), MaxPool, GlobalAveragePool, Flatten, Gemm, Sigmoid and Softmax, with a
dynamic batch dimension (so the engine carries input ranges and a dynamic memory plan).

Usage: PYTHONPATH=python KILN_BUILD_DIR=build .venv/bin/python tests/data/engines/make_format_1_0_cpu.py
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ENGINE = HERE / "format_1_0_cpu.kiln"
INPUT = HERE / "format_1_0_cpu_input.npy"
EXPECTED = HERE / "format_1_0_cpu_output.npy"


def model() -> onnx.ModelProto:
    rng = np.random.default_rng(20250601)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Sigmoid", ["p"], ["g"], name="gate"),
        helper.make_node("Mul", ["p", "g"], ["m"], name="silu"),
        helper.make_node("GlobalAveragePool", ["m"], ["a"], name="gap"),
        helper.make_node("Flatten", ["a"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "format_1_0_cpu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        initializer=[weight("w1", 8, 3, 3, 3), weight("b1", 8), weight("w2", 8, 8, 3, 3),
                     weight("b2", 8), weight("w3", 5, 8), weight("b3", 5)])
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = 10
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="overwrite with a newer format")
    args = parser.parse_args()

    import kiln

    if kiln.engine_format_version() != "1.0" and not args.force:
        raise SystemExit(f"this kiln writes engine format {kiln.engine_format_version()}, not 1.0: "
                         "the fixture must stay a 1.0 file (pass --force to refresh it anyway)")
    engine_bytes = kiln.build_onnx(model(), profiles={"x": ((1, 3, 8, 8), (2, 3, 8, 8),
                                                            (4, 3, 8, 8))})
    x = np.random.default_rng(7).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    y = kiln.Engine(engine_bytes).run({"x": x})["y"]
    ENGINE.write_bytes(engine_bytes)
    np.save(INPUT, x)
    np.save(EXPECTED, y)
    print(f"wrote {ENGINE} ({len(engine_bytes)} bytes), {INPUT.name}, {EXPECTED.name}: "
          f"y {y.shape}, with the libraries in {os.environ.get('KILN_LIB_DIR', 'build/lib')}")


if __name__ == "__main__":
    main()
