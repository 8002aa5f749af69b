"""CUDA engines whose shapes depend on input *values* (a shape, axes or a range bound fed as a graph
input): the executor copies those inputs to the host, plans from them and runs uncaptured. Every
call is checked against numpy, including calls whose shapes repeat with other values (a kernel
state prepared for one value must not be reused for another)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import kiln


def make_model(nodes, inputs, outputs, opset=18) -> bytes:
    graph = helper.make_graph(nodes, "value_shapes", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model.SerializeToString()


def reduce_sum_with_axes_input() -> bytes:
    return make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
                       helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])


def expand_with_shape_input() -> bytes:
    return make_model([helper.make_node("Expand", ["x", "shape"], ["y"]),
                       helper.make_node("Relu", ["y"], ["z"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5]),
                       helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                      [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 5])])


def range_then_mul() -> bytes:
    # y = Range(0, limit, 1) * 2: the output length is the value of `limit`.
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
         helper.make_node("Constant", [], ["one"], value=helper.make_tensor("o", TensorProto.FLOAT, [], [1.0])),
         helper.make_node("Range", ["zero", "limit", "one"], ["r"]),
         helper.make_node("Mul", ["r", "two"], ["y"])],
        "range_then_mul", [helper.make_tensor_value_info("limit", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model.SerializeToString()


def test_reduce_axes_from_an_input_follow_every_call():
    engine = kiln.Engine(kiln.build_onnx(reduce_sum_with_axes_input(), target="cuda"))
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    # [0] and [1] give the same output shape: the second call must not reuse the first's kernel state.
    for axis in (0, 1, 0, -1, 1):
        got = engine.run({"x": x, "axes": np.array([axis], np.int64)})["y"]
        np.testing.assert_allclose(got, x.sum(axis=axis), rtol=1e-6)


def test_expand_to_a_shape_given_at_run_time():
    engine = kiln.Engine(kiln.build_onnx(expand_with_shape_input(), target="cuda"))
    x = np.array([[-1.0, 2.0, -3.0, 4.0, 5.0]], np.float32)
    for rows in (3, 1, 7, 3):
        got = engine.run({"x": x, "shape": np.array([rows, 5], np.int64)})["z"]
        np.testing.assert_array_equal(got, np.maximum(np.broadcast_to(x, (rows, 5)), 0))


def test_range_length_from_an_input_value():
    engine = kiln.Engine(kiln.build_onnx(range_then_mul(), target="cuda"))
    for limit in (5.0, 1.0, 12.0, 0.0, 5.0):
        got = engine.run({"limit": np.array(limit, np.float32)})["y"]
        np.testing.assert_array_equal(got, np.arange(0.0, limit, 1.0, dtype=np.float32) * 2)


def test_value_inputs_in_device_buffers_on_the_callers_stream():
    engine = kiln.Engine(kiln.build_onnx(expand_with_shape_input(), target="cuda"))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.tensor([[-1.0, 2.0, -3.0, 4.0, 5.0]], device="cuda")
        for rows in (2, 6):
            # The shape is written on the stream just before the call: the executor's copy must wait for it.
            shape = torch.empty(2, dtype=torch.int64, device="cuda")
            shape.copy_(torch.tensor([rows, 5]), non_blocking=True)
            z = torch.empty(rows, 5, device="cuda")
            engine.run_bound({"x": (x.data_ptr(), (1, 5), np.float32), "shape": (shape.data_ptr(), (2,), np.int64)},
                             {"z": (z.data_ptr(), (rows, 5), np.float32)}, stream=stream.cuda_stream)
            stream.synchronize()
            np.testing.assert_array_equal(z.cpu().numpy(), np.maximum(np.broadcast_to(x.cpu().numpy(), (rows, 5)), 0))


def test_a_wrong_output_buffer_for_the_values_is_a_clear_error():
    engine = kiln.Engine(kiln.build_onnx(expand_with_shape_input(), target="cuda"))
    x = torch.zeros(1, 5, device="cuda")
    shape = torch.tensor([4, 5], dtype=torch.int64, device="cuda")
    z = torch.empty(3, 5, device="cuda")
    with pytest.raises(kiln.InvalidArgumentError, match=r"output 'z'"):
        engine.run_bound({"x": (x.data_ptr(), (1, 5), np.float32), "shape": (shape.data_ptr(), (2,), np.int64)},
                         {"z": (z.data_ptr(), (3, 5), np.float32)})
