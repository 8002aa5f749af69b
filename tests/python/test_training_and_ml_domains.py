"""The ai.onnx.preview.training optimizers (Adagrad, Adam, Momentum: one update step) and the
ai.onnx.ml Binarizer and ArrayFeatureExtractor, imported from their domains (even without an
ai.onnx opset) and run on the CPU, against ONNX's reference evaluator over more tensors, shapes,
attributes and dtypes than the official backend cases. Gradient, the domain's other ops and
string tensors stay refused by name."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import kiln

TRAINING = "ai.onnx.preview.training"
ML = "ai.onnx.ml"


def _model(op, domain, inputs, n_outputs, extra_opsets=(), **attrs):
    node = helper.make_node(op, list(inputs), [f"y{i}" for i in range(n_outputs)], name="dom_node",
                            domain=domain, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for k, v in inputs.items()]
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=f"y{i}") for i in range(n_outputs)])
    opsets = [helper.make_opsetid(domain, 1)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    return helper.make_model(graph, opset_imports=opsets)


def _check(op, domain, inputs, n_outputs, rtol=1e-5, atol=1e-6, extra_opsets=(), out_dtype=None, **attrs):
    """`out_dtype`: the outputs' dtype by the op's definition, where the reference's differs (its
    Adam promotes float32 through Python floats and does not cast back)."""
    model = _model(op, domain, inputs, n_outputs, extra_opsets, **attrs)
    want = ReferenceEvaluator(model).run(None, inputs)
    got = kiln.Engine(kiln.build_onnx(model, target="cpu")).run(inputs)
    for i, w in enumerate(want):
        g = got[f"y{i}"]
        w = w.astype(out_dtype) if out_dtype is not None else w
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def _optimizer_inputs(rng, groups, shapes, dtype, step):
    inputs = {"r": np.array(0.1, dtype), "t": np.array(step, np.int64)}
    for g in range(groups):
        for i, shape in enumerate(shapes):
            values = rng.standard_normal(shape).astype(dtype)
            inputs[f"in{g}_{i}"] = np.abs(values) if g == groups - 1 else values  # H, V >= 0
    return inputs


@pytest.mark.parametrize("shapes", [[(3,)], [(2, 3), (4,), ()]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 3])
def test_adagrad_matches_the_reference(shapes, dtype, step):
    rng = np.random.default_rng(len(shapes) * 10 + step)
    inputs = _optimizer_inputs(rng, 3, shapes, dtype, step)
    _check("Adagrad", TRAINING, inputs, 2 * len(shapes), decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.01)


@pytest.mark.parametrize("shapes", [[(3,)], [(2, 3), (5,)]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 4])
def test_adam_matches_the_reference(shapes, dtype, step):
    rng = np.random.default_rng(len(shapes) * 10 + step + 1)
    inputs = _optimizer_inputs(rng, 4, shapes, dtype, step)
    _check("Adam", TRAINING, inputs, 3 * len(shapes), rtol=1e-4, out_dtype=dtype, alpha=0.8, beta=0.7, epsilon=1e-4,
           norm_coefficient=0.02, norm_coefficient_post=0.1)


@pytest.mark.parametrize("mode", ["standard", "nesterov"])
@pytest.mark.parametrize("shapes", [[(4,)], [(2, 2), (3,)]])
@pytest.mark.parametrize("step", [0, 2])
def test_momentum_matches_the_reference(mode, shapes, step):
    rng = np.random.default_rng(len(shapes) * 10 + step + 2)
    inputs = _optimizer_inputs(rng, 3, shapes, np.float32, step)
    _check("Momentum", TRAINING, inputs, 2 * len(shapes), alpha=0.9, beta=0.5, mode=mode, norm_coefficient=0.01)


def test_optimizer_with_mismatched_tensors_is_an_error_naming_the_node():
    inputs = {"r": np.array(0.1, np.float32), "t": np.array(0, np.int64), "x": np.zeros(3, np.float32),
              "g": np.zeros(4, np.float32), "h": np.zeros(3, np.float32)}
    with pytest.raises(kiln.KilnError, match=r"dom_node.*input 3 \(G1\) has shape \[4\] but X1 has \[3\]"):
        kiln.build_onnx(_model("Adagrad", TRAINING, inputs, 2), target="cpu")


def test_momentum_without_its_required_attributes_is_an_error_naming_the_node():
    inputs = {"r": np.array(0.1, np.float32), "t": np.array(0, np.int64), "x": np.zeros(3, np.float32),
              "g": np.zeros(3, np.float32), "v": np.zeros(3, np.float32)}
    with pytest.raises(kiln.KilnError, match=r"dom_node.*missing required attribute 'alpha'"):
        kiln.build_onnx(_model("Momentum", TRAINING, inputs, 2), target="cpu")


def test_gradient_is_refused_with_its_reason():
    inputs = {"x": np.zeros(3, np.float32)}
    node = helper.make_node("Gradient", ["x"], ["dx"], name="grad", domain=TRAINING, xs=["x"], y="x")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [3])],
                              [onnx.ValueInfoProto(name="dx")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(TRAINING, 1), helper.make_opsetid("", 21)])
    with pytest.raises(kiln.KilnError, match="node 'grad': op 'Gradient'.*differentiates a graph"):
        kiln.build_onnx(model, target="cpu")
    assert inputs


# ---- ai.onnx.ml ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("threshold", [0.0, 1.5, -2.0])
def test_binarizer_matches_the_reference_and_onnxruntime(dtype, threshold):
    rng = np.random.default_rng(int(threshold * 10) + 27)
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    inputs = {"x": x}
    got = _check("Binarizer", ML, inputs, 1, threshold=threshold)
    if dtype == np.float32:  # ONNX Runtime's Binarizer takes float32 only
        model = _model("Binarizer", ML, inputs, 1, threshold=threshold)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(got["y0"], session.run(None, inputs)[0])


@pytest.mark.parametrize("x_shape,indices", [((3, 4), [0, 2]), ((5,), [4, 0, 4]), ((2, 3, 6), [[5, 1]]),
                                             ((2, 3), [1])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_array_feature_extractor_matches_the_reference(x_shape, indices, dtype):
    x = np.arange(np.prod(x_shape)).reshape(x_shape).astype(dtype)
    _check("ArrayFeatureExtractor", ML, {"x": x, "i": np.array(indices, np.int64)}, 1)


def test_array_feature_extractor_index_outside_is_an_error_naming_the_node():
    inputs = {"x": np.zeros((2, 3), np.float32), "i": np.array([3], np.int64)}
    engine = kiln.Engine(kiln.build_onnx(_model("ArrayFeatureExtractor", ML, inputs, 1), target="cpu"))
    with pytest.raises(kiln.KilnError, match=r"dom_node.*input 1 \(Y\) \[0\] = 3 is outside \[0, 3\)"):
        engine.run(inputs)


def test_other_ml_ops_stay_refused_by_name():
    inputs = {"x": np.zeros((2, 3), np.float32)}
    model = _model("Normalizer", ML, inputs, 1, norm="MAX")
    with pytest.raises(kiln.KilnError, match=r"op 'Normalizer' \(domain 'ai.onnx.ml', opset 1\) is not supported"):
        kiln.build_onnx(model, target="cpu")


def test_an_ai_onnx_node_without_an_ai_onnx_opset_is_refused_by_name():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [3])],
                              [onnx.ValueInfoProto(name="y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(ML, 1)])
    with pytest.raises(kiln.KilnError, match="node 'relu'.*ai.onnx domain, which the model does not import"):
        kiln.build_onnx(model, target="cpu")
