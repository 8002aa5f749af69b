"""Huge and overflowing shapes (issue 11): shape values fed to ConstantOfShape, Expand and Tile,
folded reductions over them, huge input dims and profiles, and Pad; plus the memory ceilings.
Each gives a clear kiln error naming the node and the size, never a crash, a wrong result or an
allocation attempt. Cases that crashed the process before the fix run through the CLI in a
subprocess, so a regression fails the test instead of killing pytest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

TWO_31 = 2**31
TWO_32 = 2**32
TWO_61 = 2**61
TWO_62 = 2**62


def make_model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "huge", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def ones_node(shape_input: str, output: str = "ones") -> onnx.NodeProto:
    return helper.make_node("ConstantOfShape", [shape_input], [output], name=output,
                            value=numpy_helper.from_array(np.array([1], np.float32)))


def sum_of_ones(dims) -> onnx.ModelProto:
    """sum(ConstantOfShape(dims, 1.0)) with dims a constant: everything folds."""
    return make_model(
        [ones_node("dims"), helper.make_node("ReduceSum", ["ones"], ["y"], name="sum", keepdims=0)],
        [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(dims, np.int64), "dims")])


def shape_from_input(op: str) -> onnx.ModelProto:
    """y = op(..., s) where the int64[2] input s decides the output shape at run time."""
    if op == "ConstantOfShape":
        nodes, inits = [ones_node("s", "y")], []
    elif op == "Expand":
        nodes = [helper.make_node("Expand", ["one", "s"], ["y"], name="y")]
        inits = [numpy_helper.from_array(np.ones((1, 1), np.float32), "one")]
    else:  # Tile repeats a [1, 1] tensor s times
        nodes = [helper.make_node("Tile", ["one", "s"], ["y"], name="y")]
        inits = [numpy_helper.from_array(np.ones((1, 1), np.float32), "one")]
    return make_model(nodes, [helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def run_cli(cli: Path, *args, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("KILN_MEMORY_LIMIT", None)
    env.update(env_extra or {})
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=env)


def assert_clear_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    # Exit status 1 is a kiln error; a crash is negative (a signal) and must never happen.
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# ---- constant folding ------------------------------------------------------------------------


def test_folded_sum_over_a_wrapping_shape_is_an_error_not_zero():
    # Before: the 2^64 ones wrapped to 0 elements and the engine returned the constant 0.
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(sum_of_ones([TWO_32, TWO_32]).SerializeToString())
    message = str(info.value)
    assert "node 'ones' (ConstantOfShape)" in message, message
    assert "float32[4294967296, 4294967296], larger than 2^63 - 1 bytes" in message, message


def test_folding_an_overflowing_shape_does_not_crash_the_build(tmp_path, kiln_cli):
    # Before: [2^31, 2^31] crashed `kiln build` (SIGSEGV in the CPU kernels under folding).
    model = tmp_path / "sum.onnx"
    onnx.save(sum_of_ones([TWO_31, TWO_31]), model)
    result = run_cli(kiln_cli, "build", model, "-o", tmp_path / "sum.kiln")
    assert_clear_error(result, "node 'ones' (ConstantOfShape)", "float32[2147483648, 2147483648]")


def test_huge_valid_constant_is_kept_as_an_op_and_refused_by_the_build_limit():
    # 2^40 floats (4 TiB): folding keeps the op (it does not hang materialising it) and the
    # build's memory ceiling names the node and the size.
    with pytest.raises(kiln.OutOfMemoryError) as info:
        kiln.build_onnx(sum_of_ones([2**20, 2**20]).SerializeToString())
    message = str(info.value)
    assert "node 'ones' (ConstantOfShape): output tensor 'ones' (float32[1048576, 1048576])" in message
    assert "needs 4 TiB" in message and "build's memory limit" in message, message


def test_folding_still_materialises_small_constants():
    engine = kiln.Engine(kiln.build_onnx(sum_of_ones([4, 8]).SerializeToString()))
    assert float(engine.run({})["y"]) == 32.0


# ---- shapes from input values at run time ----------------------------------------------------


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile"])
def test_shape_values_that_wrap_are_errors(op):
    engine = kiln.Engine(kiln.build_onnx(shape_from_input(op).SerializeToString()))
    assert engine.run({"s": np.array([2, 3], np.int64)})["y"].shape == (2, 3)
    # Before (ConstantOfShape): no error and an empty result, the count having wrapped to 0.
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"s": np.array([TWO_32, TWO_32], np.int64)})
    message = str(info.value)
    assert f"({op}): output 'y' would be float32[4294967296, 4294967296]" in message, message


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile"])
def test_shape_values_that_overflow_bytes_do_not_crash(tmp_path, kiln_cli, op):
    # Before: [2^31, 2^31] overflowed a heap buffer in constant_of_shape_kernel (SIGSEGV).
    model, engine, values = tmp_path / "m.onnx", tmp_path / "m.kiln", tmp_path / "s.npy"
    onnx.save(shape_from_input(op), model)
    assert run_cli(kiln_cli, "build", model, "-o", engine).returncode == 0
    np.save(values, np.array([TWO_31, TWO_31], np.int64))
    result = run_cli(kiln_cli, "run", engine, "--input", f"s={values}")
    assert_clear_error(result, f"({op}): output 'y' would be float32[2147483648, 2147483648]")


def test_runtime_memory_limit_is_configurable(tmp_path, kiln_cli):
    model, engine, values = tmp_path / "m.onnx", tmp_path / "m.kiln", tmp_path / "s.npy"
    onnx.save(shape_from_input("ConstantOfShape"), model)
    assert run_cli(kiln_cli, "build", model, "-o", engine).returncode == 0
    np.save(values, np.array([2**20, 2**20], np.int64))
    # 4 TiB of valid size: refused before any allocation, by the default limit (the machine's RAM).
    result = run_cli(kiln_cli, "run", engine, "--input", f"s={values}")
    assert_clear_error(result, "output 'y' (float32[1048576, 1048576]) needs 4 TiB", "physical memory")
    np.save(values, np.array([256, 256], np.int64))
    assert run_cli(kiln_cli, "run", engine, "--input", f"s={values}").returncode == 0
    result = run_cli(kiln_cli, "run", engine, "--input", f"s={values}",
                     env_extra={"KILN_MEMORY_LIMIT": "64K"})
    assert_clear_error(result, "needs 256 KiB", "memory limit of 64 KiB (65536 bytes) (KILN_MEMORY_LIMIT)")
    result = run_cli(kiln_cli, "run", engine, "--input", f"s={values}",
                     env_extra={"KILN_MEMORY_LIMIT": "plenty"})
    assert_clear_error(result, "KILN_MEMORY_LIMIT: 'plenty' is not a number")


# ---- huge input dims and profiles ------------------------------------------------------------


def relu_model(shape) -> onnx.ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])


def test_input_dims_whose_size_overflows_are_refused_at_build(tmp_path, kiln_cli):
    # Before: built, and `kiln run --random` crashed in store_from_double.
    model = tmp_path / "wide.onnx"
    onnx.save(relu_model(["n", TWO_62, 16]), model)
    result = run_cli(kiln_cli, "build", model, "-o", tmp_path / "wide.kiln")
    assert_clear_error(result, "input 'x': its largest allowed shape float32[4096, 4611686018427387904, 16]")


def test_profile_max_whose_size_overflows_is_refused(tmp_path, kiln_cli):
    model = tmp_path / "deep.onnx"
    onnx.save(relu_model(["n", 16]), model)
    result = run_cli(kiln_cli, "build", model, "-o", tmp_path / "deep.kiln", "--profile",
                     f"x:min=1x16,opt=1x16,max={TWO_62}x16")
    assert_clear_error(result, "input 'x': its largest allowed shape float32[4611686018427387904, 16]")


def test_random_inputs_above_the_memory_limit_are_refused(tmp_path, kiln_cli):
    model, engine = tmp_path / "r.onnx", tmp_path / "r.kiln"
    onnx.save(relu_model(["n", 1024]), model)
    assert run_cli(kiln_cli, "build", model, "-o", engine, "--profile",
                   "x:min=1x1024,opt=1024x1024,max=4096x1024").returncode == 0
    assert run_cli(kiln_cli, "run", engine, "--random").returncode == 0
    result = run_cli(kiln_cli, "run", engine, "--random", env_extra={"KILN_MEMORY_LIMIT": "1M"})
    assert_clear_error(result, "input 'x': float32[1024, 1024] needs 4 MiB")


# ---- Pad and the build limit -----------------------------------------------------------------


@pytest.mark.parametrize("pads, needle", [
    ([TWO_62, TWO_62], "pads 4611686018427387904/4611686018427387904 on dimension 0 of extent 2 overflow"),
    ([TWO_61, TWO_61], "output 'y' would be float32[4611686018427387906], larger than 2^63 - 1 bytes"),
])
def test_huge_pads_are_clear_errors(pads, needle):
    # Before: the raw C++ text "vector::_M_default_append" leaked out of constant folding.
    model = make_model([helper.make_node("Pad", ["data", "pads"], ["y"], name="pad")], [],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                       [numpy_helper.from_array(np.ones(2, np.float32), "data"),
                        numpy_helper.from_array(np.array(pads, np.int64), "pads")])
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(model.SerializeToString())
    assert "node 'pad' (Pad)" in str(info.value) and needle in str(info.value), str(info.value)


def test_build_memory_limit_option(tmp_path, kiln_cli):
    # A static 4 MiB activation: fine by default, refused under --memory-limit 1M.
    model = tmp_path / "s.onnx"
    onnx.save(relu_model([1024, 1024]), model)
    assert run_cli(kiln_cli, "build", model, "-o", tmp_path / "ok.kiln").returncode == 0
    result = run_cli(kiln_cli, "build", model, "-o", tmp_path / "no.kiln", "--memory-limit", "1M")
    assert_clear_error(result, "input tensor 'x' (float32[1024, 1024]) needs 4 MiB",
                       "build's memory limit of 1 MiB (1048576 bytes) (BuilderConfig::memory_limit")
