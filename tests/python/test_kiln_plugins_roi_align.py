"""kiln::RoiAlign (plugins/roi_align/) against ONNX Runtime's RoiAlign (opset 16): one-node models
in domain "kiln", built with libkiln_plugins.so loaded, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from kiln_plugins_testing import run_kiln, run_ort


def make_inputs(rng, n, c, h, w, rois, scale, dtype=np.float32):
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    xy = rng.uniform(-2, max(h, w) / scale, (rois, 2))
    wh = rng.uniform(0.2, max(h, w) / scale / 2, (rois, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(dtype)
    indices = rng.integers(0, n, rois).astype(np.int64)
    return {"X": x, "rois": boxes, "batch_indices": indices}


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("output, sampling_ratio", [((1, 1), 0), ((3, 2), 2), ((7, 7), 0), ((2, 5), 1)])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_matches_onnxruntime(build_dir, mode, coordinate_mode, output, sampling_ratio, scale):
    rng = np.random.default_rng(len(mode) * 100 + output[0] * 10 + sampling_ratio)
    inputs = make_inputs(rng, 2, 3, 9, 11, 6, scale)
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode, "output_height": output[0],
             "output_width": output[1], "sampling_ratio": sampling_ratio, "spatial_scale": scale}
    want = run_ort("RoiAlign", inputs, ["Y"], attrs, opset=16)[0]
    got = run_kiln(build_dir, "RoiAlign", inputs, ["Y"], attrs)["Y"]
    assert got.shape == want.shape == (6, 3, *output)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_defaults_float16_and_int32_indices(build_dir):
    rng = np.random.default_rng(3)
    inputs = make_inputs(rng, 1, 4, 8, 8, 5, 1.0, np.float16)
    want = run_ort("RoiAlign", {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in inputs.items()},
                   ["Y"], {}, opset=16)[0]
    got = run_kiln(build_dir, "RoiAlign", {**inputs, "batch_indices": inputs["batch_indices"].astype(np.int32)},
                   ["Y"], {})["Y"]
    assert got.dtype == np.float16 and got.shape == (5, 4, 1, 1)
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_no_rois(build_dir):
    rng = np.random.default_rng(4)
    inputs = make_inputs(rng, 1, 2, 5, 5, 0, 1.0)
    got = run_kiln(build_dir, "RoiAlign", inputs, ["Y"], {"output_height": 2, "output_width": 3})["Y"]
    assert got.shape == (0, 2, 2, 3)


def test_torchvision_aligned_false_is_output_half_pixel(build_dir):
    # A roi smaller than a pixel grows to one pixel in output_half_pixel mode (torchvision aligned=False)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    inputs = {"X": x, "rois": np.array([[1, 1, 1.2, 1.2]], np.float32), "batch_indices": np.array([0], np.int64)}
    attrs = {"coordinate_transformation_mode": "output_half_pixel", "sampling_ratio": 1}
    got = run_kiln(build_dir, "RoiAlign", inputs, ["Y"], attrs)["Y"]
    # one sample at the centre of [1, 2] x [1, 2]: (1.5, 1.5) -> mean of x[1:3, 1:3]
    np.testing.assert_allclose(got.reshape(-1), [x[0, 0, 1:3, 1:3].mean()], rtol=1e-6)


def test_bad_batch_index_and_fields_are_refused(build_dir):
    rng = np.random.default_rng(5)
    inputs = make_inputs(rng, 1, 1, 4, 4, 1, 1.0)
    with pytest.raises(kiln.KilnError, match=r"batch_indices\[0\] = 3 is outside \[0, 1\)"):
        run_kiln(build_dir, "RoiAlign", {**inputs, "batch_indices": np.array([3], np.int64)}, ["Y"], {})
    with pytest.raises(kiln.InvalidArgumentError, match="mode must be avg or max, got 'median'"):
        run_kiln(build_dir, "RoiAlign", inputs, ["Y"], {"mode": "median"})


@pytest.mark.parametrize("aligned", [0, 1])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_torchvision_roi_align_matches_onnxruntime(build_dir, aligned, sampling_ratio, dtype):
    # kiln::TorchvisionRoiAlign: torchvision::roi_align's signature, rois [K, 5] with the batch index first
    rng = np.random.default_rng(aligned * 10 + sampling_ratio + 1)
    inputs = make_inputs(rng, 2, 3, 10, 9, 7, 0.5)
    rois = np.concatenate([inputs["batch_indices"][:, None].astype(np.float32), inputs["rois"]], axis=1)
    fields = {"spatial_scale": 0.5, "pooled_height": 3, "pooled_width": 2, "sampling_ratio": sampling_ratio,
              "aligned": aligned}
    attrs = {"spatial_scale": 0.5, "output_height": 3, "output_width": 2, "sampling_ratio": max(sampling_ratio, 0),
             "coordinate_transformation_mode": "half_pixel" if aligned else "output_half_pixel"}
    x = inputs["X"].astype(dtype)
    rois = rois.astype(dtype)
    want = run_ort("RoiAlign", {"X": x.astype(np.float32), "rois": rois[:, 1:].astype(np.float32),
                                "batch_indices": inputs["batch_indices"]}, ["Y"], attrs, opset=16)[0]
    got = run_kiln(build_dir, "TorchvisionRoiAlign", {"input": x, "rois": rois}, ["Y"], fields)["Y"]
    assert got.dtype == dtype and got.shape == (7, 3, 3, 2)
    tolerance = 1e-5 if dtype == np.float32 else 3e-3
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=tolerance, atol=tolerance)
