"""Untrusted model and engine files (docs/security.md): external data that tries to leave the
model's folder, malformed ONNX graphs, engine metadata mutated behind a valid checksum and
hostile dims in shape inference. Each case must be a kiln error naming what is wrong, never a
file read from elsewhere, a hang or a Python decoding error."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from engine_bytes import assemble, sections

SECTION_METADATA = 7
WEIGHT = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4


def matmul_model() -> onnx.ModelProto:
    """y = x @ weight with x [2, 3] and weight [3, 4] an initializer."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"], name="matmul")], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(WEIGHT, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def save_with_external_weights(folder: Path) -> Path:
    """Saves matmul_model() to folder/model.onnx with its weight in folder/weights.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(matmul_model(), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size == WEIGHT.nbytes
    return path


# ---- external data --------------------------------------------------------------------------

def test_external_weights_inside_the_folder_are_read(tmp_path):
    engine = kiln.Engine(kiln.build_onnx(save_with_external_weights(tmp_path / "model")))
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(engine.run({"x": x})["y"], x @ WEIGHT, rtol=1e-6)


@pytest.mark.parametrize("target", ["copy-outside", "/etc/passwd", "chain", "subfolder"])
def test_symlinked_external_weights_outside_the_folder_are_refused(tmp_path, target):
    path = save_with_external_weights(tmp_path / "model")
    weights = tmp_path / "model" / "weights.bin"
    outside = tmp_path / "outside"
    outside.mkdir()
    os.replace(weights, outside / "weights.bin")  # the very bytes the model expects
    if target == "copy-outside":
        weights.symlink_to(outside / "weights.bin")
    elif target == "/etc/passwd":
        weights.symlink_to("/etc/passwd")
    elif target == "chain":
        (tmp_path / "model" / "hop.bin").symlink_to("../outside/weights.bin")
        weights.symlink_to("hop.bin")
    else:  # a linked subfolder pointing outside, named in the model's location
        (tmp_path / "model" / "shared").symlink_to(outside, target_is_directory=True)
        model = onnx.load(str(path), load_external_data=False)
        for entry in model.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = "shared/weights.bin"
        path.write_bytes(model.SerializeToString())
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.build_onnx(path)
    message = str(info.value)
    assert "tensor 'weight'" in message and "leads outside the model's folder" in message, message


def test_external_weights_that_are_a_fifo_fail_at_once(tmp_path, kiln_cli):
    path = save_with_external_weights(tmp_path / "model")
    weights = tmp_path / "model" / "weights.bin"
    weights.unlink()
    os.mkfifo(weights)
    # A reader opening the FIFO would block forever; the CLI must fail within the timeout.
    result = subprocess.run([str(kiln_cli), "build", str(path), "-o", str(tmp_path / "m.kiln")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "is a FIFO, not a regular file" in result.stderr, result.stderr


def test_external_weights_that_are_a_directory_are_refused(tmp_path):
    path = save_with_external_weights(tmp_path / "model")
    weights = tmp_path / "model" / "weights.bin"
    weights.unlink()
    weights.mkdir()
    with pytest.raises(kiln.CorruptFileError, match="is a directory, not a regular file"):
        kiln.build_onnx(path)


# ---- malformed graphs -----------------------------------------------------------------------

def test_duplicate_graph_inputs_are_refused():
    model = matmul_model()
    model.graph.input.append(model.graph.input[0])
    with pytest.raises(kiln.CorruptFileError, match="graph input 'x' is listed twice"):
        kiln.build_onnx(model)


def test_graph_without_outputs_is_refused():
    model = matmul_model()
    del model.graph.output[:]
    with pytest.raises(kiln.CorruptFileError, match="the graph declares no outputs"):
        kiln.build_onnx(model)


def test_input_name_with_a_nul_is_refused():
    # The C API would have handed the binding out as "x", silently cut at the NUL.
    model = matmul_model()
    model.graph.input[0].name = "x\0y"
    model.graph.node[0].input[0] = "x\0y"
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.build_onnx(model)
    assert "graph input 'x\\0y': the name contains a NUL byte" in str(info.value), info.value


def test_duplicate_attributes_are_refused():
    model = matmul_model()
    model.graph.node.append(helper.make_node("LeakyRelu", ["y"], ["z"], name="leaky", alpha=0.1))
    model.graph.node[-1].attribute.append(helper.make_attribute("alpha", 0.2))
    model.graph.output[0].name = "z"
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.build_onnx(model)
    message = str(info.value)
    assert "node 'leaky'" in message and "attribute 'alpha' appears twice" in message, message


def test_conv_channel_product_that_overflows_is_an_error():
    # W's channels x group = (2^62 + 1) x 4 wraps to X's 4 channels in 64-bit arithmetic.
    huge = 2**62 + 1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=4)], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, huge, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    with pytest.raises(kiln.InvalidArgumentError) as info:
        kiln.build_onnx(model)
    message = str(info.value)
    # W itself (M >= group output channels of C / group each) holds more than 2^63 - 1 bytes
    # whenever C overflows, so the input-shape check refuses it before Conv's own overflow check
    # (which the C++ tests reach directly) could.
    assert "input 'w'" in message and "larger than 2^63 - 1 bytes" in message, message


# ---- engine metadata ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine_bytes() -> bytes:
    return kiln.build_onnx(matmul_model(), metadata={"owner": "tests", "name": "caf\u00e9"})


def with_metadata(data: bytes, metadata: bytes) -> bytes:
    """The engine with its metadata section replaced and the checksum recomputed."""
    major, minor = struct.unpack_from("<HH", data, 8)
    parts = sections(data)
    parts[SECTION_METADATA] = metadata
    return assemble(data[16:48], parts, major, minor)


def test_metadata_of_a_good_engine_decodes(engine_bytes):
    assert kiln.Engine(with_metadata(engine_bytes, b'{"a": [1, 2]}')).metadata == {"a": [1, 2]}
    metadata = kiln.Engine(engine_bytes).metadata
    assert metadata["owner"] == "tests" and metadata["name"] == "caf\u00e9", metadata


@pytest.mark.parametrize("metadata", [
    b'{"owner": "\xff"}',          # not UTF-8: was UnicodeDecodeError in Engine.metadata
    b'{"owner": "\xed\xa0\x80"}',  # an encoded surrogate
    b'{"owner": "tests"',          # truncated: was JSONDecodeError
    b'{"owner": "te\x00sts"}',     # a NUL (C strings end there)
    b'{}\x00{"owner": 1}',
    b'["not", "an", "object"]',
    b"",
], ids=["invalid-utf8", "surrogate", "truncated", "nul-in-string", "nul-between", "array",
        "empty"])
def test_bad_metadata_fails_at_load_naming_the_section(engine_bytes, metadata, tmp_path):
    bad = with_metadata(engine_bytes, metadata)
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.Engine(bad)
    assert "section 'metadata'" in str(info.value), str(info.value)
    path = tmp_path / "bad.kiln"
    path.write_bytes(bad)
    with pytest.raises(kiln.CorruptFileError) as info:
        kiln.Engine(path)
    assert str(path) in str(info.value) and "section 'metadata'" in str(info.value)
