"""kiln::NonMaxSuppression (plugins/non_max_suppression/) against ONNX Runtime's NonMaxSuppression:
one-node models in domain "kiln", built with libkiln_plugins.so loaded, on the CPU."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kiln_plugins_testing import make_boxes, make_scores, run_kiln, run_ort






CASES = list(itertools.product([(1, 1, 10), (2, 3, 24), (1, 2, 0), (1, 1, 1)], [0, 1], [0, 3, 100],
                               [0.3, 0.7], [None, 0.4]))


@pytest.mark.parametrize("dims, center, max_output, iou, score_threshold", CASES)
def test_matches_onnxruntime(build_dir, dims, center, max_output, iou, score_threshold):
    batches, classes, count = dims
    rng = np.random.default_rng(hash((dims, center, max_output, iou)) % 2**32)
    inputs = {"boxes": make_boxes(rng, batches, count, center), "scores": make_scores(rng, batches, classes, count),
              "max_output": np.array([max_output], np.int64), "iou": np.array([iou], np.float32)}
    if score_threshold is not None:
        inputs["score_threshold"] = np.array([score_threshold], np.float32)
    attrs = {"center_point_box": center}
    want = run_ort("NonMaxSuppression", inputs, ["selected"], attrs)[0]
    got = run_kiln(build_dir, "NonMaxSuppression", inputs, ["selected"], attrs)["selected"]
    assert got.dtype == np.int64 and got.shape == want.shape, (got, want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("as_constants", [False, True])
def test_float16_and_constant_thresholds(build_dir, as_constants):
    rng = np.random.default_rng(7)
    boxes, scores = make_boxes(rng, 2, 40, 0), make_scores(rng, 2, 2, 40)
    boxes = boxes.astype(np.float16)
    scalars = {"max_output": np.array(5, np.int64), "iou": np.array(0.5, np.float32),
               "score_threshold": np.array(0.2, np.float32)}
    want = run_ort("NonMaxSuppression", {"boxes": boxes.astype(np.float32), "scores": scores, **scalars},
                   ["selected"], {})[0]
    inputs = {"boxes": boxes, "scores": scores.astype(np.float16), **scalars}
    got = run_kiln(build_dir, "NonMaxSuppression", inputs, ["selected"], {},
                   constants=scalars if as_constants else None)["selected"]
    np.testing.assert_array_equal(got, want)


def test_absent_optional_inputs_select_nothing(build_dir):
    # Without max_output_boxes_per_class, ONNX selects no box.
    rng = np.random.default_rng(1)
    inputs = {"boxes": make_boxes(rng, 1, 5, 0), "scores": make_scores(rng, 1, 1, 5)}
    got = run_kiln(build_dir, "NonMaxSuppression", inputs, ["selected"], {})["selected"]
    assert got.shape == (0, 3)


def test_ties_take_the_lower_index_and_nan_scores_are_never_selected(build_dir):
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 6, 6], [8, 8, 9, 9]]], np.float32)
    scores = np.array([[[0.5, 0.5, np.nan, 0.1]]], np.float32)
    inputs = {"boxes": boxes, "scores": scores, "max_output": np.array([10], np.int64),
              "iou": np.array([0.5], np.float32)}
    got = run_kiln(build_dir, "NonMaxSuppression", inputs, ["selected"], {})["selected"]
    np.testing.assert_array_equal(got, [[0, 0, 0], [0, 0, 3]])


def test_bad_center_point_box_is_refused(build_dir):
    import kiln

    rng = np.random.default_rng(2)
    inputs = {"boxes": make_boxes(rng, 1, 3, 0), "scores": make_scores(rng, 1, 1, 3)}
    with pytest.raises(kiln.InvalidArgumentError, match="center_point_box must be 0 or 1, got 2"):
        run_kiln(build_dir, "NonMaxSuppression", inputs, ["selected"], {"center_point_box": 2})
