"""Bad input at every door: the wrong feeds, broken or newer engine files, unsupported models.
Each test checks the exception type AND that the message names what is wrong."""

from __future__ import annotations

import re
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from engine_bytes import (MAGIC, engine_checksum, stored_checksum, with_kernel_modules,
                          with_version)


def two_input_model(opset: int = 17, batch=2) -> onnx.ModelProto:
    """y = relu(image @ weight + bias), with inputs "image" [batch, 3] and "bias" [4]."""
    nodes = [
        helper.make_node("MatMul", ["image", "weight"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "bias"], ["pre"], name="add"),
        helper.make_node("Relu", ["pre"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        initializer=[numpy_helper.from_array(
            np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


@pytest.fixture(scope="module")
def engine_bytes() -> bytes:
    return kiln.build_onnx(two_input_model().SerializeToString())


@pytest.fixture()
def engine(engine_bytes) -> kiln.Engine:
    return kiln.Engine(engine_bytes)


IMAGE = np.ones((2, 3), np.float32)
BIAS = np.zeros(4, np.float32)


def test_good_feeds_work(engine):
    # The baseline the other tests perturb.
    y = engine.run({"image": IMAGE, "bias": BIAS})["y"]
    np.testing.assert_allclose(y, IMAGE @ (np.arange(12, dtype=np.float32).reshape(3, 4) / 10),
                               rtol=1e-6)


def test_wrong_input_name(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE, "offset": BIAS})
    message = str(info.value)
    assert "offset" in message or "'bias'" in message, message


def test_wrong_shape_names_binding_expected_and_got(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": np.ones((2, 5), np.float32), "bias": BIAS})
    message = str(info.value)
    assert "image" in message, message
    assert "[2, 3]" in message and "[2, 5]" in message, message


def test_wrong_rank(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE, "bias": np.zeros((1, 4), np.float32)})
    message = str(info.value)
    assert "bias" in message and "[4]" in message and "[1, 4]" in message, message


def test_wrong_dtype_names_binding_expected_and_got(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE.astype(np.float64), "bias": BIAS})
    message = str(info.value)
    assert "image" in message and "float32" in message and "float64" in message, message


def test_dtype_without_kiln_equivalent(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE.astype(np.complex64), "bias": BIAS})
    assert "image" in str(info.value) and "complex64" in str(info.value)


def test_missing_input(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE})
    message = str(info.value)
    assert "bias" in message and "missing" in message.lower(), message


def test_extra_input(engine):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": IMAGE, "bias": BIAS, "surplus": BIAS})
    assert "surplus" in str(info.value), str(info.value)


def test_engine_still_usable_after_errors(engine):
    with pytest.raises(kiln.InvalidArgumentError):
        engine.run({"image": IMAGE})
    assert engine.run({"image": IMAGE, "bias": BIAS + 1})["y"].shape == (2, 4)


def test_dynamic_dim_outside_profile(tmp_path):
    model = two_input_model(batch="batch")
    engine = kiln.Engine(kiln.build_onnx(model.SerializeToString(),
                                         profiles={"image": ((1, 3), (2, 3), (4, 3))}))
    assert engine.inputs[0].shape == (-1, 3)
    assert engine.run({"image": np.ones((4, 3), np.float32), "bias": BIAS})["y"].shape == (4, 4)
    with pytest.raises(kiln.InvalidArgumentError) as info:
        engine.run({"image": np.ones((5, 3), np.float32), "bias": BIAS})
    message = str(info.value)
    assert "image" in message and "5" in message and "4" in message, message


# ---- engine files -----------------------------------------------------------------------------

def test_checksum_helper_matches_the_writer(engine_bytes):
    # Guards the crafted-file tests below: our XXH64 must agree with the engine writer's.
    assert engine_bytes[:8] == MAGIC
    assert engine_checksum(engine_bytes) == stored_checksum(engine_bytes)


@pytest.mark.parametrize("where", ["middle", "last", "weights-area", "header-minor"])
def test_flipped_byte_is_corrupt(engine_bytes, where):
    data = bytearray(engine_bytes)
    index = {"middle": len(data) // 2, "last": len(data) - 1, "weights-area": len(data) - 20,
             "header-minor": 10}[where]
    data[index] ^= 0x40
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.Engine(bytes(data))
    assert "checksum" in str(info.value).lower(), str(info.value)


def test_bad_magic_is_corrupt(engine_bytes):
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.Engine(b"NOTKILN\0" + engine_bytes[8:])
    assert "not a kiln engine" in str(info.value), str(info.value)


@pytest.mark.parametrize("keep", [0, 7, 40, 100, "half", "all-but-one"])
def test_truncated_engine_is_corrupt(engine_bytes, keep):
    size = {"half": len(engine_bytes) // 2, "all-but-one": len(engine_bytes) - 1}.get(keep, keep)
    with pytest.raises(kiln.CorruptFileError):
        kiln.Engine(engine_bytes[:size])


def test_trailing_bytes_are_corrupt(engine_bytes):
    with pytest.raises(kiln.CorruptFileError):
        kiln.Engine(engine_bytes + b"\0" * 8)


def test_garbage_is_corrupt():
    rng = np.random.default_rng(0)
    for size in (1, 64, 4096):
        with pytest.raises(kiln.CorruptFileError):
            kiln.Engine(rng.integers(0, 256, size, dtype=np.uint8).tobytes())


def test_newer_major_version_is_incompatible(engine_bytes, tmp_path):
    newer = with_version(engine_bytes, 2, 0)
    with pytest.raises(kiln.IncompatibleError) as info:
        kiln.Engine(newer)
    message = str(info.value)
    ours = kiln.engine_format_version()
    assert ours == "1.1"
    assert "2.0" in message and f"runtime's {ours}" in message and "newer" in message, message
    path = tmp_path / "from_the_future.kiln"
    path.write_bytes(newer)
    with pytest.raises(kiln.IncompatibleError) as info:
        kiln.Engine(path)
    assert str(path) in str(info.value) or "2.0" in str(info.value)


def test_newer_minor_version_still_loads(engine_bytes):
    # Minor versions only add things older readers skip (docs/engine-format.md).
    engine = kiln.Engine(with_version(engine_bytes, 1, 7))
    assert engine.run({"image": IMAGE, "bias": BIAS})["y"].shape == (2, 4)


def test_missing_engine_file_names_path(tmp_path):
    path = tmp_path / "nope.kiln"
    with pytest.raises(kiln.NotFoundError) as info:
        kiln.Engine(path)
    assert str(path) in str(info.value)


# ---- ONNX models the builder must refuse -----------------------------------------------------

def test_unsupported_ops_are_all_listed():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="fine_relu"),
        helper.make_node("ImageDecoder", ["a"], ["b"], name="my_decoder"),
        helper.make_node("FancyOp", ["b"], ["y"], name="my_fancy", domain="com.example"),
    ]
    graph = helper.make_graph(nodes, "unsupported",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 3)])
    model.ir_version = 10
    with pytest.raises(kiln.UnsupportedError) as info:
        kiln.build_onnx(model.SerializeToString())
    message = str(info.value)
    for expected in ("my_decoder", "ImageDecoder", "17", "my_fancy", "FancyOp", "com.example"):
        assert expected in message, f"{expected!r} missing from: {message}"
    assert "fine_relu" not in message, message


@pytest.mark.parametrize("opset", [5, 29])
def test_opset_outside_supported_range(opset):
    model = two_input_model(opset=opset)
    with pytest.raises(kiln.UnsupportedError) as info:
        kiln.build_onnx(model.SerializeToString())
    assert re.search(rf"opset {opset}\b.*6-28", str(info.value)), str(info.value)


def test_corrupt_onnx_bytes():
    data = two_input_model().SerializeToString()
    with pytest.raises(kiln.CorruptFileError):
        kiln.build_onnx(data[: len(data) // 2])
    with pytest.raises(kiln.CorruptFileError):
        kiln.build_onnx(b"\xff" * 64)


def test_missing_onnx_file_names_path(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(kiln.NotFoundError) as info:
        kiln.build_onnx(str(path))
    assert str(path) in str(info.value)


def test_bad_build_config():
    data = two_input_model().SerializeToString()
    with pytest.raises(ValueError):
        kiln.build_onnx(data, precision="fp8")
    with pytest.raises(kiln.KilnError) as info:
        kiln.build_onnx(data, target="tpu")
    assert "tpu" in str(info.value)
    with pytest.raises(kiln.KilnError) as info:
        kiln.build_onnx(data, profiles={"no_such_input": ((1, 3), (1, 3), (2, 3))})
    assert "no_such_input" in str(info.value)


def test_cpu_engine_takes_no_gpu_device(engine_bytes, tmp_path):
    assert kiln.Engine(engine_bytes, device=None).backend == "cpu"
    with pytest.raises(kiln.IncompatibleError, match="built for the cpu backend and cannot run on cuda:0"):
        kiln.Engine(engine_bytes, device=0)
    path = tmp_path / "cpu.kiln"
    path.write_bytes(engine_bytes)
    with pytest.raises(kiln.IncompatibleError, match="cannot run on cuda:3"):
        kiln.Engine(path, device=3)
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(kiln.InvalidArgumentError, match="device must be None or a CUDA ordinal"):
            kiln.Engine(engine_bytes, device=bad)


def test_build_takes_a_kernel_cache_directory_or_off(tmp_path):
    # The C API knows the key (an unknown one is an error); a cpu build compiles no kernels, so
    # the directory is never created.
    data = two_input_model().SerializeToString()
    cache = tmp_path / "kernels"
    for value in ("off", cache, str(cache)):
        engine = kiln.Engine(kiln.build_onnx(data, kernel_cache=value))
        assert engine.run({"image": IMAGE, "bias": BIAS})["y"].shape == (2, 4)
    assert not cache.exists()


# ---- engines carrying generated kernel modules (format 1.1) -------------------------------------

def test_kernel_module_errors_are_corrupt_files_naming_the_module(engine_bytes):
    good = with_kernel_modules(engine_bytes, [{"name": "g0"}], {2: "g0"})
    assert struct.unpack_from("<HH", good, 8) == (1, 1)
    cases = [
        (with_kernel_modules(engine_bytes, [{"name": "g0"}], {2: "g1"}),
         "layer 2 'relu', attribute 'kiln_kernel': names kernel module 'g1'"),
        (with_kernel_modules(engine_bytes, [{"name": "g0", "sm_arch": 80}], {}),
         "kernel module 0 'g0': compiled for sm_80, but the engine targets sm_90"),
        (with_kernel_modules(engine_bytes, [{"name": "g0"}, {"name": "g0"}], {}),
         "kernel module 1 'g0': duplicate name"),
        (with_kernel_modules(engine_bytes, [{"name": "g0", "cubin": b"MZ" + bytes(100)}], {}),
         "kernel module 0 'g0': the cubin (102 bytes) is not a CUDA ELF image: no ELF magic"),
        (with_kernel_modules(engine_bytes, [{"name": ""}], {}), "kernel module 0 '': empty name"),
    ]
    for data, message in cases:
        with pytest.raises(kiln.CorruptFileError) as info:
            kiln.Engine(data)
        assert message in str(info.value), str(info.value)
    # A 1.0 file cannot hold the section format 1.1 introduced.
    with pytest.raises(kiln.CorruptFileError, match="appeared in format 1.1"):
        kiln.Engine(with_version(good, 1, 0))


def test_engine_with_kernel_modules_passes_verification(engine_bytes):
    # Valid, so loading gets as far as the device: this machine's runtime has no CUDA or no GPU
    # (the GPU tests load real modules).
    good = with_kernel_modules(engine_bytes, [{"name": "g0"}], {2: "g0"})
    with pytest.raises((kiln.UnsupportedError, kiln.DeviceError, kiln.CorruptFileError,
                        kiln.IncompatibleError)) as info:
        kiln.Engine(good)
    message = str(info.value)
    assert "kernel module 0" not in message and "attribute 'kiln_kernel'" not in message, message
    if isinstance(info.value, kiln.CorruptFileError):  # a GPU driver refused the fake cubin
        assert "generated kernel module 'g0'" in message, message


@pytest.mark.parametrize("op,attrs,needle", [
    ("Range", {"stash_type": 11}, "stash_type"),
])
def test_newer_opset_attributes_kiln_lacks_are_refused_by_name(op, attrs, needle):
    # Opsets 24-28 are accepted; an attribute they added that asks for behaviour kiln lacks is an
    # error naming it, never ignored.
    if op == "Range":
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in ("start", "limit", "delta")]
        node = helper.make_node("Range", ["start", "limit", "delta"], ["y"], **attrs)
    else:
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])]
        node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)])
    with pytest.raises(kiln.KilnError, match=needle):
        kiln.build_onnx(model.SerializeToString(), target="cpu")


def test_attention_sliding_window_below_minus_one_is_invalid():
    shape = [1, 2, 4, 8]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("Q", "K", "V")]
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], left_window_size=-2)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    with pytest.raises(kiln.InvalidArgumentError, match="left_window_size.*-2"):
        kiln.build_onnx(model.SerializeToString(), target="cpu")
    # A window of 2 builds (tests/python/test_onnx_attention.py checks its values).
    model.graph.node[0].attribute[0].i = 2
    kiln.build_onnx(model.SerializeToString(), target="cpu")
    # Without the window, opset 25 attention builds.
    model.graph.node[0].ClearField("attribute")
    kiln.build_onnx(model.SerializeToString(), target="cpu")
