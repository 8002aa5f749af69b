"""NonZero, Unique, Compress and NonMaxSuppression (output sizes that depend on the input data) on
the CPU backend, against onnx's reference implementation, with layers after them whose shapes
follow those sizes, and the same engine run again on data giving other sizes."""
from __future__ import annotations


import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import kiln

_NP_TO_ONNX = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.int64: TensorProto.INT64,
               np.int32: TensorProto.INT32, np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8,
               np.bool_: TensorProto.BOOL, np.float16: TensorProto.FLOAT16}


def _model(nodes, inputs, outputs, initializers=(), opset=20):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(name, _NP_TO_ONNX[dtype], shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info(name, _NP_TO_ONNX[dtype], None) for name, dtype in outputs],
        [numpy_helper.from_array(value, name) for name, value in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _check(model, feeds_list, use_onnxruntime=False):
    """Builds once, runs every feed on one engine and compares with onnx's reference (or ONNX
    Runtime, where the reference is wrong)."""
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString()))
    if use_onnxruntime:
        import onnxruntime

        reference = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    else:
        reference = ReferenceEvaluator(model)
    for feeds in feeds_list:
        got = engine.run(feeds)
        expected = reference.run(None, feeds)
        for output, want in zip(model.graph.output, expected):
            have = got[output.name]
            assert have.shape == np.asarray(want).shape, (output.name, have.shape, np.asarray(want).shape)
            np.testing.assert_array_equal(have, want, err_msg=output.name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.int8, np.uint8, np.bool_,
                                   np.float16])
def test_nonzero_every_dtype_then_gather_nd(dtype):
    # NonZero -> Transpose -> GatherND: the usual "values where x != 0" pattern.
    model = _model([helper.make_node("NonZero", ["x"], ["nz"]),
                    helper.make_node("Transpose", ["nz"], ["nzt"]),
                    helper.make_node("GatherND", ["x", "nzt"], ["values"])],
                   [("x", dtype, [3, 4])], [("nz", np.int64), ("values", dtype)])
    rng = np.random.default_rng(0)
    feeds = [{"x": (rng.integers(0, 3, (3, 4)) * (rng.random((3, 4)) < p)).astype(dtype)} for p in (0.3, 0.9)]
    feeds.append({"x": np.zeros((3, 4), dtype)})  # an empty result
    if dtype in (np.float32, np.float64, np.float16):
        feeds.append({"x": np.array([[-0.0, np.nan, 0, 1]] * 3, dtype)})  # -0 is zero, NaN is not
        _check_nan_aware(model, feeds)
        return
    _check(model, feeds)


def _check_nan_aware(model, feeds_list):
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString()))
    reference = ReferenceEvaluator(model)
    for feeds in feeds_list:
        got = engine.run(feeds)
        for output, want in zip(model.graph.output, reference.run(None, feeds)):
            np.testing.assert_array_equal(got[output.name], want, err_msg=output.name)


@pytest.mark.parametrize("sorted_", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_unique_all_outputs(sorted_, axis):
    attrs = {"sorted": sorted_} if axis is None else {"sorted": sorted_, "axis": axis}
    model = _model([helper.make_node("Unique", ["x"], ["y", "indices", "inverse", "counts"], **attrs),
                    helper.make_node("Neg", ["y"], ["neg"])],
                   [("x", np.float32, [4, 3])],
                   [("y", np.float32), ("indices", np.int64), ("inverse", np.int64), ("counts", np.int64),
                    ("neg", np.float32)])
    feeds = [{"x": np.array([[2, 1, 1], [3, 4, 3], [2, 1, 1], [0, 0, 0]], np.float32)},
             {"x": np.array([[1, 1, 1]] * 4, np.float32)},
             {"x": np.arange(12, dtype=np.float32).reshape(4, 3)[::-1].copy()}]
    # onnx's reference takes unsorted uniques along axis 0 whatever the axis: ONNX Runtime instead.
    _check(model, feeds, use_onnxruntime=not sorted_)


def test_unique_of_int64_sorted_by_value():
    model = _model([helper.make_node("Unique", ["x"], ["y", "indices", "inverse", "counts"])],
                   [("x", np.int64, [7])],
                   [("y", np.int64), ("indices", np.int64), ("inverse", np.int64), ("counts", np.int64)])
    _check(model, [{"x": np.array([5, -3, 2**40, 5, -3, 0, 2**40], np.int64)}])


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_compress_then_reduce(axis):
    attrs = {} if axis is None else {"axis": axis}
    model = _model([helper.make_node("Compress", ["x", "condition"], ["y"], **attrs),
                    helper.make_node("ReduceSum", ["y"], ["total"], keepdims=1)],
                   [("x", np.float32, [3, 4]), ("condition", np.bool_, [3])],
                   [("y", np.float32), ("total", np.float32)])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    feeds = [{"x": x, "condition": np.array(c, bool)} for c in ([True, False, True], [False] * 3, [True] * 3)]
    _check(model, feeds)


def _boxes_and_scores(rng, batches, classes, n):
    centres = rng.random((batches, n, 2)).astype(np.float32)
    sizes = (0.1 + 0.4 * rng.random((batches, n, 2))).astype(np.float32)
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=2)
    scores = rng.random((batches, classes, n)).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("center_point_box", [0, 1])
@pytest.mark.parametrize("inputs", ["all", "no_score_threshold", "max_only", "none"])
def test_non_max_suppression(center_point_box, inputs):
    names = {"all": ["boxes", "scores", "max", "iou", "score"], "no_score_threshold": ["boxes", "scores", "max", "iou"],
             "max_only": ["boxes", "scores", "max"], "none": ["boxes", "scores"]}[inputs]
    model = _model([helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=center_point_box),
                    helper.make_node("Shape", ["selected"], ["count"], end=1)],
                   [(n, dtype, shape) for n, dtype, shape in
                    [("boxes", np.float32, [2, 8, 4]), ("scores", np.float32, [2, 3, 8]), ("max", np.int64, [1]),
                     ("iou", np.float32, [1]), ("score", np.float32, [1])] if n in names],
                   [("selected", np.int64), ("count", np.int64)])
    rng = np.random.default_rng(1)
    feeds = []
    for max_boxes, iou, score in ((3, 0.3, 0.2), (0, 0.5, 0.0), (100, 0.0, 0.9), (2, 1.0, 0.5)):
        boxes, scores = _boxes_and_scores(rng, 2, 3, 8)
        every = {"boxes": boxes, "scores": scores, "max": np.array([max_boxes], np.int64),
                 "iou": np.array([iou], np.float32), "score": np.array([score], np.float32)}
        feeds.append({n: every[n] for n in names})
    # onnx's reference cannot leave the optional inputs out: ONNX Runtime there.
    _check(model, feeds, use_onnxruntime=inputs in ("max_only", "none"))


def test_run_bound_reports_the_written_shape_and_refuses_a_small_buffer():
    model = _model([helper.make_node("NonZero", ["x"], ["nz"])], [("x", np.float32, [5])], [("nz", np.int64)])
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString()))
    assert engine.outputs[0].shape[1] == -1
    x = np.array([0, 2, 0, 3, 0], np.float32)
    out = np.full((1, 5), -1, np.int64)
    shapes = engine.run_bound({"x": (x.ctypes.data, x.shape, x.dtype)}, {"nz": (out.ctypes.data, out.shape, out.dtype)})
    assert shapes == {"nz": (1, 2)}
    np.testing.assert_array_equal(out[0, :2], [1, 3])
    assert out[0, 2] == -1
    small = np.zeros((1, 4), np.int64)
    with pytest.raises(kiln.InvalidArgumentError, match="output 'nz'.*up to 5"):
        engine.run_bound({"x": (x.ctypes.data, x.shape, x.dtype)}, {"nz": (small.ctypes.data, small.shape, small.dtype)})


def test_torch_runtime_returns_the_shape_the_run_produced():
    """libkiln_torch.so allocates a data-dependent output at its upper bound; the tensor it returns
    must be the part the run wrote, in the actual shape (not the bound's)."""
    torch = pytest.importorskip("torch")
    import kiln.runtime

    if not kiln.runtime.is_loaded():
        try:
            kiln.runtime.load_library()
        except kiln.runtime.RuntimeLibraryNotFoundError:
            pytest.skip("libkiln_torch.so not built")
    model = _model([helper.make_node("NonZero", ["x"], ["nz"]),
                    helper.make_node("Relu", ["x"], ["y"])],
                   [("x", np.float32, [2, 3])], [("nz", np.int64), ("y", np.float32)])
    engine = kiln.runtime.engine_from_bytes(kiln.build_onnx(model.SerializeToString()))
    for values in ([[0, 2, 0], [3, 0, -1]], [[0, 0, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1]]):
        x = torch.tensor(values, dtype=torch.float32)
        nz, y = kiln.runtime.execute(engine, [x])
        want = np.stack(np.nonzero(x.numpy()))
        assert tuple(nz.shape) == want.shape
        np.testing.assert_array_equal(nz.numpy(), want)
        np.testing.assert_array_equal(y.numpy(), np.maximum(x.numpy(), 0))
