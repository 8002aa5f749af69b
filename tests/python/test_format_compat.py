"""Engines written by older kiln versions keep loading: tests/data/engines holds a format 1.0
CPU engine (written by make_format_1_0_cpu.py before format 1.1 existed) with its input and the
output the 1.0 runtime computed."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np

import kiln

DATA = Path(__file__).resolve().parents[1] / "data" / "engines"


def test_format_1_0_cpu_engine_loads_and_computes_the_same():
    engine_bytes = (DATA / "format_1_0_cpu.kiln").read_bytes()
    major, minor = struct.unpack_from("<HH", engine_bytes, 8)
    assert (major, minor) == (1, 0), "the fixture must stay a format 1.0 file"
    engine = kiln.Engine(engine_bytes)
    assert engine.backend == "cpu"
    assert [b.name for b in engine.inputs] == ["x"] and engine.inputs[0].shape == (-1, 3, 8, 8)
    x = np.load(DATA / "format_1_0_cpu_input.npy")
    expected = np.load(DATA / "format_1_0_cpu_output.npy")
    y = engine.run({"x": x})["y"]
    assert y.shape == expected.shape == (3, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_format_1_0_cpu_engine_inspects(kiln_cli):
    out = subprocess.run([str(kiln_cli), "inspect", str(DATA / "format_1_0_cpu.kiln")],
                         capture_output=True, text=True, check=True).stdout
    assert "format version: 1.0" in out, out
    assert "Conv 'conv1'" in out and "Gemm 'fc'" in out, out
