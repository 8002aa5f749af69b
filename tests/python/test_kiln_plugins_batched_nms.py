"""kiln::BatchedNMS and kiln::BatchedNMSPadded (plugins/batched_nms/) against a NumPy reference of
torchvision.ops.batched_nms written here (torchvision is not installed): one-node models in domain
"kiln", built with libkiln_plugins.so loaded, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln_plugins_testing import batched_nms_inputs, reference_batched_nms, run_kiln


@pytest.mark.parametrize("n, classes", [(0, 1), (1, 1), (30, 1), (60, 4), (200, 10)])
@pytest.mark.parametrize("iou", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("top_k", [-1, 0, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_batched_nms_matches_reference(build_dir, n, classes, iou, top_k, dtype):
    rng = np.random.default_rng(n * 31 + classes)
    inputs = batched_nms_inputs(rng, n, classes, dtype, np.int64 if classes % 2 else np.int32)
    attrs = {"iou_threshold": iou} if top_k == -1 else {"iou_threshold": iou, "top_k": top_k}
    got = run_kiln(build_dir, "BatchedNMS", inputs, ["keep"], attrs)["keep"]
    want = reference_batched_nms(inputs["boxes"], inputs["scores"], inputs["idxs"], iou, top_k)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n, classes, k", [(0, 1, 4), (50, 3, 10), (50, 3, 100), (8, 2, 0)])
def test_padded_variant_pads_with_minus_one_and_counts(build_dir, n, classes, k):
    rng = np.random.default_rng(n + k)
    inputs = batched_nms_inputs(rng, n, classes)
    got = run_kiln(build_dir, "BatchedNMSPadded", inputs, ["keep", "count"], {"iou_threshold": 0.4, "max_output": k})
    want = reference_batched_nms(inputs["boxes"], inputs["scores"], inputs["idxs"], 0.4, k)
    assert got["keep"].shape == (k,) and got["count"].shape == ()
    assert int(got["count"]) == len(want)
    np.testing.assert_array_equal(got["keep"][:len(want)], want)
    assert (got["keep"][len(want):] == -1).all()


def test_all_suppressed_but_the_best_ties_and_nan(build_dir):
    # Five copies of one box in one class: only the best survives; equal scores keep the lower index;
    # the NaN score is never kept; another class is independent.
    boxes = np.tile(np.array([[0, 0, 4, 4]], np.float32), (7, 1))
    scores = np.array([0.5, 0.9, 0.9, np.nan, 0.1, 0.3, 0.95], np.float32)
    idxs = np.array([0, 0, 0, 0, 0, 1, 2], np.int64)
    inputs = {"boxes": boxes, "scores": scores, "idxs": idxs}
    got = run_kiln(build_dir, "BatchedNMS", inputs, ["keep"], {"iou_threshold": 0.5})["keep"]
    np.testing.assert_array_equal(got, [6, 1, 5])
    np.testing.assert_array_equal(got, reference_batched_nms(boxes, scores, idxs, 0.5))


def test_fields_are_checked(build_dir):
    inputs = batched_nms_inputs(np.random.default_rng(0), 4, 1)
    with pytest.raises(kiln.InvalidArgumentError, match="needs attribute 'iou_threshold'"):
        run_kiln(build_dir, "BatchedNMS", inputs, ["keep"], {})
    with pytest.raises(kiln.InvalidArgumentError, match="top_k must be >= 0, or -1 for all, got -2"):
        run_kiln(build_dir, "BatchedNMS", inputs, ["keep"], {"iou_threshold": 0.5, "top_k": -2})
    with pytest.raises(kiln.InvalidArgumentError, match="boxes must be \\[N, 4\\]"):
        run_kiln(build_dir, "BatchedNMS", {**inputs, "boxes": np.zeros((4, 5), np.float32)}, ["keep"],
                 {"iou_threshold": 0.5})
    with pytest.raises(kiln.UnsupportedError, match="takes idxs as int64 or int32, got float32"):
        run_kiln(build_dir, "BatchedNMS", {**inputs, "idxs": np.zeros(4, np.float32)}, ["keep"],
                 {"iou_threshold": 0.5})


@pytest.mark.parametrize("n", [0, 1, 40, 150])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_torchvision_nms_is_one_class(build_dir, n, dtype):
    # kiln::TorchvisionNms: torchvision::nms's signature (dets, scores; field iou_threshold)
    inputs = batched_nms_inputs(np.random.default_rng(n + 5), n, 1, dtype)
    got = run_kiln(build_dir, "TorchvisionNms", {"dets": inputs["boxes"], "scores": inputs["scores"]}, ["keep"],
                   {"iou_threshold": 0.35})["keep"]
    np.testing.assert_array_equal(got, reference_batched_nms(inputs["boxes"], inputs["scores"], np.zeros(n), 0.35))
