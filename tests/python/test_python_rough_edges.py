"""Python API rough edges (issue 14, point 6): build_onnx profiles as (min, max) like the CLI, a
model loaded without its external data built with base_dir, and failures as kiln exceptions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln_testing import run_ort
from test_cli import small_cnn


def test_profiles_take_min_max_pairs_like_the_cli():
    engine = kiln.Engine(kiln.build_onnx(small_cnn(), profiles={"x": ((1, 3, 8, 8), (4, 3, 8, 8))}))
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(engine.run({"x": x})["y"], run_ort(small_cnn(), {"x": x})["y"],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(kiln.InvalidArgumentError, match="outside|range|5"):
        engine.run({"x": np.zeros((5, 3, 8, 8), np.float32)})


@pytest.mark.parametrize("spec", [((1, 3, 8, 8),), "1x3x8x8", ((1, 3, 8, 8), None), {"opt": (1, 3, 8, 8)}])
def test_bad_profiles_are_invalid_argument_errors(spec):
    with pytest.raises(kiln.InvalidArgumentError, match="profile for 'x'"):
        kiln.build_onnx(small_cnn(), profiles={"x": spec})


def test_bad_precision_is_a_kiln_error_and_a_value_error():
    with pytest.raises(kiln.InvalidArgumentError, match="precision"):
        kiln.build_onnx(small_cnn(batch=1), precision="fp8")
    with pytest.raises(ValueError):  # still what Python's own argument checks raise
        kiln.build_onnx(small_cnn(batch=1), precision="fp8")


def external_data_model(directory):
    """y = x @ w with w (64 x 32) saved as external data in `directory`."""
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = directory / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return path, w


def test_model_loaded_without_external_data_builds_with_base_dir(tmp_path, monkeypatch):
    path, w = external_data_model(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    monkeypatch.chdir(tmp_path.parent)  # the data file is not in the working directory
    with pytest.raises(kiln.KilnError, match="weights.bin"):
        kiln.build_onnx(model)
    engine = kiln.Engine(kiln.build_onnx(model, base_dir=tmp_path))
    x = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(engine.run({"x": x})["y"], x @ w, rtol=1e-4, atol=1e-4)
    # A path finds its data next to itself; base_dir overrides that directory.
    kiln.build_onnx(path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "weights.bin").rename(moved / "weights.bin")
    kiln.Engine(kiln.build_onnx(path, base_dir=moved))


def test_missing_files_are_kiln_errors(tmp_path):
    with pytest.raises(kiln.NotFoundError):
        kiln.build_onnx(tmp_path / "absent.onnx")
    with pytest.raises(kiln.NotFoundError):
        kiln.build_onnx(tmp_path / "absent.onnx", base_dir=tmp_path)
    with pytest.raises(kiln.KilnError):
        kiln.Engine(tmp_path / "absent.kiln")
