"""kiln.Engine used wrongly or concurrently (issue 11): one Engine run from many threads at once
gives every caller its own results (it crashed the interpreter, or returned another call's
outputs, when all threads shared one execution context); names and paths with a NUL are refused
(they were cut short at the NUL); a closed Engine refuses calls.

The threaded runs happen in a child interpreter, so that a regression fails this test instead of
killing the test session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import kiln
from kiln_testing import python_child_env

WIDTH = 32


def mlp_model() -> onnx.ModelProto:
    """y = relu(x @ w1 + b1) @ w2, x of shape [batch, 32] with a dynamic batch."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((WIDTH, 64)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    return model


@pytest.fixture(scope="module")
def engine_bytes() -> bytes:
    return kiln.build_onnx(mlp_model(), profiles={"x": {"min": (1, WIDTH), "max": (64, WIDTH)}})


CHILD = textwrap.dedent("""
    import sys, threading
    import numpy as np
    import kiln

    engine_path, threads, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    engine = kiln.Engine(engine_path)
    rng = np.random.default_rng(0)
    # Batches of different sizes, so that calls sharing a context would also mix shapes.
    inputs = [rng.standard_normal((1 + (i * 7) % 64, 32)).astype(np.float32) for i in range(16)]
    expected = [engine.run({"x": x})["y"] for x in inputs]
    bad = []
    errors = []

    def worker(t):
        try:
            for call in range(calls):
                i = (t * 5 + call) % len(inputs)
                y = engine.run({"x": inputs[i]})["y"]
                if y.shape != expected[i].shape or not np.array_equal(y, expected[i]):
                    bad.append((t, call))
        except Exception as e:  # a clear error would still be a failure here: it must just work
            errors.append(repr(e))

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers: w.start()
    for w in workers: w.join()
    print(f"mismatches {len(bad)} errors {len(errors)} {errors[:3]}")
    sys.exit(1 if bad or errors else 0)
""")


@pytest.mark.parametrize("threads,calls", [(16, 100), (64, 40)])
def test_one_engine_from_many_threads_gives_single_threaded_results(tmp_path, engine_bytes, threads, calls):
    path = tmp_path / "mlp.kiln"
    path.write_bytes(engine_bytes)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(kiln.__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, str(script), str(path), str(threads), str(calls)],
                            env=python_child_env(env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"exit status {result.returncode} (a negative one is the signal that killed it)\n{result.stdout}\n{result.stderr[-2000:]}")
    assert "mismatches 0 errors 0" in result.stdout


def test_pool_reuses_contexts_and_set_cuda_graphs_reaches_all(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    x = np.ones((3, WIDTH), np.float32)
    first = engine.run({"x": x})["y"]
    assert len(engine._idle) == 1  # one sequential caller: one context, reused
    engine.set_cuda_graphs(False)  # no effect on a CPU engine, but applied to the pool without error
    np.testing.assert_array_equal(engine.run({"x": x})["y"], first)
    assert len(engine._idle) == 1
    engine.close()


def test_nul_in_an_input_name_is_refused(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    x = np.ones((2, WIDTH), np.float32)
    # Before: the name was cut at the NUL, so "x\0anything" silently bound "x".
    with pytest.raises(kiln.InvalidArgumentError, match="input name 'x\\\\x00y' contains a NUL"):
        engine.run({"x\0y": x})
    with pytest.raises(kiln.InvalidArgumentError, match="NUL"):
        engine.run_bound({"x\0": (x.ctypes.data, x.shape, x.dtype)}, {})
    assert engine.run({"x": x})["y"].shape == (2, 10)


def test_nul_in_a_path_is_refused(tmp_path, engine_bytes):
    path = tmp_path / "mlp.kiln"
    path.write_bytes(engine_bytes)
    # Before: "<path>\0.bak" opened <path>.
    with pytest.raises(kiln.InvalidArgumentError, match="engine path .* contains a NUL"):
        kiln.Engine(str(path) + "\0.bak")
    onnx_path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(), onnx_path)
    with pytest.raises(kiln.InvalidArgumentError, match="model path .* contains a NUL"):
        kiln.build_onnx(str(onnx_path) + "\0.bak")


def test_a_closed_engine_refuses_calls(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    engine.close()
    with pytest.raises(kiln.InvalidArgumentError, match="closed"):
        engine.run({"x": np.ones((1, WIDTH), np.float32)})
    with pytest.raises(kiln.InvalidArgumentError, match="closed"):
        engine.set_cuda_graphs(True)
    engine.close()  # twice: nothing happens


def test_close_while_other_threads_run(engine_bytes):
    engine = kiln.Engine(engine_bytes)
    x = np.ones((8, WIDTH), np.float32)
    want = engine.run({"x": x})["y"]
    outcomes = []
    started = threading.Barrier(9)

    def worker():
        started.wait()
        for _ in range(50):
            try:
                y = engine.run({"x": x})["y"]
            except kiln.InvalidArgumentError as e:
                outcomes.append("closed" if "closed" in str(e) else repr(e))
                return
            outcomes.append("ok" if np.array_equal(y, want) else "wrong")

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for w in workers:
        w.start()
    started.wait()
    engine.close()
    for w in workers:
        w.join()
    assert set(outcomes) <= {"ok", "closed"}, outcomes


def test_workspace_limit_takes_only_its_default(tmp_path, kiln_cli):
    # Accepted and ignored before: kernels get a fixed 1 GiB of scratch memory.
    model = mlp_model()
    assert kiln.build_onnx(model, workspace_limit=1 << 30)  # the default, stated
    with pytest.raises(kiln.UnsupportedError, match="workspace_limit 1048576 is not supported"):
        kiln.build_onnx(model, workspace_limit=1 << 20)
    onnx_path = tmp_path / "mlp.onnx"
    onnx.save(model, onnx_path)
    engine = tmp_path / "mlp.kiln"
    result = subprocess.run([str(kiln_cli), "build", str(onnx_path), "-o", str(engine), "--workspace", "1M"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "workspace_limit 1048576 is not supported" in result.stderr, result
    assert not engine.exists()
    subprocess.run([str(kiln_cli), "build", str(onnx_path), "-o", str(engine), "--workspace", "1G"], check=True)
    assert engine.is_file()
