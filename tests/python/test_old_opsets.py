"""Models of ai.onnx opsets 6 to 12, whose op forms the importer rewrites to opset 13's
(src/frontend/onnx/opset_normalizer.cpp), against ONNX Runtime on the same model; and the old forms
kiln refuses, each by name."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

RNG = np.random.default_rng(12)


def _model(node, inputs, opset, initializers=()):
    graph = helper.make_graph([node], "old", [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
                                              for n, a in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.INT64 if o == "indices" else TensorProto.FLOAT,
                                                             None) for o in node.output],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model.SerializeToString()


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CASES = {
    # Before 13, Softmax normalises over every axis from `axis` on (the input coerced to 2-D).
    "softmax_11_axis1_3d": (helper.make_node("Softmax", ["x"], ["y"], axis=1), {"x": _x(2, 3, 4)}, 11, ()),
    "softmax_9_default_axis_4d": (helper.make_node("Softmax", ["x"], ["y"]), {"x": _x(2, 3, 2, 2)}, 9, ()),
    "logsoftmax_12_axis0": (helper.make_node("LogSoftmax", ["x"], ["y"], axis=0), {"x": _x(3, 5)}, 12, ()),
    "slice_9_attributes": (helper.make_node("Slice", ["x"], ["y"], starts=[1, 0], ends=[3, -1], axes=[0, 2]),
                           {"x": _x(4, 3, 5)}, 9, ()),
    "topk_9_k_attribute": (helper.make_node("TopK", ["x"], ["values", "indices"], k=2, axis=1),
                           {"x": _x(3, 6)}, 9, ()),
    "pad_10_attributes": (helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 2, 0, 2, 1], value=1.5),
                          {"x": _x(2, 3, 4)}, 10, ()),
    "dropout_10_ratio": (helper.make_node("Dropout", ["x"], ["y"], ratio=0.3), {"x": _x(2, 5)}, 10, ()),
    "batchnorm_7_spatial": (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=1),
                            {"x": _x(2, 3, 4, 4)}, 7,
                            tuple(numpy_helper.from_array(a, n) for n, a in
                                  (("s", _x(3)), ("b", _x(3)), ("m", _x(3)), ("v", np.abs(_x(3)) + 0.5)))),
    "add_6_broadcast_trailing": (helper.make_node("Add", ["x", "b"], ["y"], broadcast=1),
                                 {"x": _x(2, 3, 4)}, 6, (numpy_helper.from_array(_x(4), "b"),)),
    "gemm_6_broadcast": (helper.make_node("Gemm", ["x", "w", "c"], ["y"], broadcast=1), {"x": _x(3, 4)}, 6,
                         (numpy_helper.from_array(_x(4, 5), "w"), numpy_helper.from_array(_x(5), "c"))),
}


# ONNX Runtime has no opset 6 kernels for these: numpy computes what the opset 6 spec says.
NUMPY_REFERENCE = {
    "add_6_broadcast_trailing": lambda inputs, inits: [inputs["x"] + inits["b"]],
    "gemm_6_broadcast": lambda inputs, inits: [inputs["x"] @ inits["w"] + inits["c"]],
}


@pytest.mark.parametrize("name", list(CASES))
def test_old_opset_forms_match_onnxruntime(name):
    node, inputs, opset, initializers = CASES[name]
    model = _model(node, inputs, opset, initializers)
    if name in NUMPY_REFERENCE:
        want = NUMPY_REFERENCE[name](inputs, {t.name: numpy_helper.to_array(t) for t in initializers})
    else:
        want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, inputs)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(inputs)
    for output, expected in zip(node.output, want):
        if output == "indices":  # TopK's indices: exact
            np.testing.assert_array_equal(got[output], expected)
        else:
            np.testing.assert_allclose(got[output], expected, rtol=1e-5, atol=1e-6, err_msg=f"{name}: {output}")


@pytest.mark.parametrize("node,opset,needle", [
    (helper.make_node("Resize", ["x", "scales"], ["y"]), 10, "opset 10"),
    (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0), 7, "spatial"),
    (helper.make_node("Relu", ["x"], ["y"]), 5, "opset 5"),
], ids=["resize_10", "batchnorm_spatial_0", "opset_5"])
def test_old_forms_kiln_lacks_are_refused_by_name(node, opset, needle):
    inputs = {"x": _x(1, 3, 2, 2)}
    initializers = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    initializers += [numpy_helper.from_array(_x(3), n) for n in ("s", "b", "m")]
    initializers += [numpy_helper.from_array(np.ones(3, np.float32), "v")]
    model = _model(node, inputs, opset, initializers)
    with pytest.raises(kiln.UnsupportedError, match=needle):
        kiln.build_onnx(model, target="cpu")


@pytest.mark.parametrize("node,opset,error,needle", [
    (helper.make_node("Slice", ["x"], ["y"], ends=[1]), 9, kiln.InvalidArgumentError, "'starts' and 'ends'"),
    (helper.make_node("TopK", ["x"], ["y", "i"]), 9, kiln.InvalidArgumentError, "'k'"),
    (helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 0, 0, 0, 0, 0, 0], value=[1.0, 2.0]), 10,
     kiln.InvalidArgumentError, "'value' must be a float"),
    (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], is_test=0), 6,
     kiln.UnsupportedError, "is_test = 0"),
], ids=["slice_9_without_starts", "topk_9_without_k", "pad_10_value_list", "batchnorm_6_training"])
def test_malformed_or_training_old_forms_are_errors_naming_the_attribute(node, opset, error, needle):
    inputs = {"x": _x(1, 3, 2, 2)}
    initializers = [numpy_helper.from_array(_x(3), n) for n in ("s", "b", "m")]
    initializers += [numpy_helper.from_array(np.ones(3, np.float32), "v")]
    with pytest.raises(error, match=needle):
        kiln.build_onnx(_model(node, inputs, opset, initializers), target="cpu")
