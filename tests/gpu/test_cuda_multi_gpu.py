"""Two GPUs in one process: engines bound to a chosen GPU, device-mismatch errors, multi-device
safe mode, and a thread per GPU (scripts/gpu-check.sh multigpu; skipped with fewer than 2 GPUs).

What the runtime promises, and what each test holds it to:

* Loading: a CUDA engine binds to the GPU asked for (torch.classes.kiln.Engine(bytes, N),
  kiln.Engine(bytes, device=N), kiln_engine_load_*_on_device), else to the current device when its
  architecture matches.
* Host tensors in and out (kiln.Engine.run, kiln_context_execute): the runtime copies them itself
  and switches to the engine's GPU for the call and back, whatever the current device and mode.
* Device buffers (kiln.Engine.run_bound, kiln_context_execute_bound, kiln::execute_engine):
  safe mode off: the current device must be the engine's, else KILN_ERROR_DEVICE naming both;
  on: the call switches to the engine's GPU, warns once per engine and device on stderr, runs,
  and switches back.
* A buffer in memory of another GPU: KILN_ERROR_INVALID_ARGUMENT naming the tensor and both GPUs,
  in either mode (the C API cannot move raw pointers). torch inputs on another device: a
  RuntimeError naming both, unless safe mode is on, which moves them to the engine's GPU.

The model is a small Conv -> Relu -> Flatten -> Gemm network; every result is compared with the
CPU engine built from the same ONNX model (fp32 both: 1e-4).
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch

if torch.cuda.device_count() < 2:
    pytest.skip(f"needs 2 CUDA GPUs; this machine has {torch.cuda.device_count()}",
                allow_module_level=True)
if torch.cuda.get_device_capability(0) != torch.cuda.get_device_capability(1):
    pytest.skip("needs 2 GPUs of one architecture (an engine targets one): "
                f"{torch.cuda.get_device_name(0)} vs {torch.cuda.get_device_name(1)}",
                allow_module_level=True)

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import kiln  # noqa: E402
import kiln.runtime as kr  # noqa: E402
from kiln import _capi  # noqa: E402

SHAPE_X = (2, 3, 8, 8)
SHAPE_Y = (2, 6)
TOLERANCE = dict(rtol=1e-4, atol=1e-4)
CALLS_PER_THREAD = 50

# Every engine this module loads stays alive until the module ends, with the GPU it is bound to:
# safe mode warns once per (engine, device) keyed by the engine's address, which a freed engine
# could hand to a new one.
_ENGINES: list[tuple[int, object]] = []


def conv_gemm_onnx() -> bytes:
    """x[2,3,8,8] -> Conv(4, 3x3, pad 1) + bias -> Relu -> Flatten -> Gemm(6) + bias -> y[2,6]."""
    rng = np.random.default_rng(11)

    def weight(name, shape, scale):
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        return numpy_helper.from_array(data, name)

    weights = [weight("wc", (4, 3, 3, 3), 0.3), weight("bc", (4,), 1.0),
               weight("wg", (6, 4 * 8 * 8), 0.05), weight("bg", (6,), 1.0)]
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE_X))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE_Y))
    graph = helper.make_graph(nodes, "conv_gemm", [x], [y], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model.SerializeToString()


def host_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE_X).astype(np.float32)


def current_device_error(current: int, engine: int) -> str:
    """The message of a bound call made with the wrong current device (safe mode off)."""
    return re.escape(f"the current CUDA device is cuda:{current} but the engine is bound to "
                     f"cuda:{engine}; make cuda:{engine} current before calling, or turn on "
                     "multi-device safe mode")


def buffer_device_error(role: str, name: str, buffer: int, engine: int) -> str:
    return re.escape(f"{role} '{name}': the buffer is on cuda:{buffer} but the engine is bound to "
                     f"cuda:{engine}; pass device memory of cuda:{engine}")


def safe_mode_warning(current: int, engine: int) -> str:
    return (f"kiln: warning: multi-device safe mode switched from cuda:{current} to "
            f"cuda:{engine}, where the engine lives")


def load_on(gpu: int, data: bytes) -> kiln.Engine:
    """A kiln.Engine (C API) bound to `gpu`: loaded while `gpu` is the current device."""
    previous = torch.cuda.current_device()
    torch.cuda.set_device(gpu)
    try:
        engine = kiln.Engine(data)
    finally:
        torch.cuda.set_device(previous)
    _ENGINES.append((gpu, engine))
    return engine


def run_bound(engine: kiln.Engine, x: torch.Tensor, y: torch.Tensor,
              stream: int | None = None) -> None:
    engine.run_bound({"x": (x.data_ptr(), tuple(x.shape), np.float32)},
                     {"y": (y.data_ptr(), tuple(y.shape), np.float32)}, stream=stream)


def on(gpu: int, array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).to(f"cuda:{gpu}")


def nan_output(gpu: int) -> torch.Tensor:
    """An output buffer whose NaNs show whether a call wrote it."""
    return torch.full(SHAPE_Y, float("nan"), device=f"cuda:{gpu}")


def read(y: torch.Tensor) -> np.ndarray:
    torch.cuda.synchronize(y.device)
    return y.cpu().numpy()


def safe_mode_lib() -> int:
    """The runtime library's own view of the process-wide mode (1 on, 0 off)."""
    return _capi.runtime().kiln_get_multi_device_safe_mode()


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> bytes:
    # Both GPUs get their primary context now: torch switches devices lazily until one exists,
    # and these tests compare torch's current device with the runtime's.
    for gpu in (0, 1):
        torch.zeros(1, device=f"cuda:{gpu}")
    torch.cuda.set_device(0)
    return conv_gemm_onnx()


@pytest.fixture(scope="module")
def cuda_bytes(model) -> bytes:
    return kiln.build_onnx(model, target="cuda")  # tactics timed on GPU 0 (same architecture as 1)


@pytest.fixture(scope="module")
def reference(model):
    """y for an input array, from the CPU engine."""
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    return lambda x: cpu.run({"x": x})["y"]


@pytest.fixture(scope="module", autouse=True)
def release_engines_on_their_gpus():
    # Released here rather than at interpreter exit, each with its own GPU current: this module
    # tests calls across GPUs, not releases across GPUs.
    yield
    for gpu, engine in _ENGINES:
        torch.cuda.set_device(gpu)
        if isinstance(engine, kiln.Engine):
            engine.close()
    _ENGINES.clear()
    torch.cuda.set_device(0)


@pytest.fixture(autouse=True)
def device_0_and_safe_mode_off(model):
    torch.cuda.set_device(0)
    _capi.runtime().kiln_set_multi_device_safe_mode(0)
    yield
    # Surface any asynchronous failure in the test that caused it, then reset for the next one.
    for gpu in (0, 1):
        torch.cuda.synchronize(gpu)
    torch.cuda.set_device(0)
    _capi.runtime().kiln_set_multi_device_safe_mode(0)


# ---- 1. an engine bound to GPU 1 ---------------------------------------------------------------


def test_engine_loaded_while_gpu1_is_current_runs_on_gpu1(cuda_bytes, reference):
    engine = load_on(1, cuda_bytes)
    x = host_input(1)
    np.testing.assert_allclose(engine.run({"x": x})["y"], reference(x), **TOLERANCE)
    assert torch.cuda.current_device() == 0  # the host-tensor call switched back

    # Bound on GPU 1: with GPU 1 current and buffers there, safe mode off is enough.
    torch.cuda.set_device(1)
    x1, y1 = on(1, x), nan_output(1)
    for seed in (2, 3, 4):  # graph capture, then replays (the host call above ran eagerly)
        x = host_input(seed)
        x1.copy_(torch.from_numpy(x))
        run_bound(engine, x1, y1)
        np.testing.assert_allclose(read(y1), reference(x), **TOLERANCE)
    # ... and it is GPU 1 the engine is bound to: from GPU 0 the same call names both devices.
    torch.cuda.set_device(0)
    with pytest.raises(kiln.DeviceError, match=current_device_error(current=0, engine=1)):
        run_bound(engine, x1, y1)


def test_engine_built_and_loaded_on_gpu1(model, reference):
    data = kiln.build_onnx(model, target="cuda", device=1)  # tactics timed on GPU 1
    engine = load_on(1, data)
    x = host_input(5)
    np.testing.assert_allclose(engine.run({"x": x})["y"], reference(x), **TOLERANCE)
    torch.cuda.set_device(1)
    x1, y1 = on(1, x), nan_output(1)
    run_bound(engine, x1, y1)
    np.testing.assert_allclose(read(y1), reference(x), **TOLERANCE)


def test_engine_asked_for_gpu1_while_gpu0_is_current(cuda_bytes, reference):
    engine = kiln.Engine(cuda_bytes, device=1)
    _ENGINES.append((1, engine))
    assert torch.cuda.current_device() == 0
    x = host_input(6)
    np.testing.assert_allclose(engine.run({"x": x})["y"], reference(x), **TOLERANCE)
    with pytest.raises(kiln.DeviceError, match=current_device_error(current=0, engine=1)):
        run_bound(engine, on(1, x), nan_output(1))
    torch.cuda.set_device(1)
    y1 = nan_output(1)
    run_bound(engine, on(1, x), y1)
    np.testing.assert_allclose(read(y1), reference(x), **TOLERANCE)
    torch.cuda.set_device(0)
    with pytest.raises(kiln.DeviceError, match="cuda:7"):
        kiln.Engine(cuda_bytes, device=7)


# ---- 2. a GPU 0 context called while GPU 1 is current, safe mode off ---------------------------


def test_gpu0_context_from_gpu1_without_safe_mode(cuda_bytes, reference):
    engine = load_on(0, cuda_bytes)
    x = host_input(6)
    x0, y0 = on(0, x), nan_output(0)
    torch.cuda.set_device(1)
    assert safe_mode_lib() == 0

    # Host tensors carry no device: the call runs on GPU 0 and leaves GPU 1 current.
    np.testing.assert_allclose(engine.run({"x": x})["y"], reference(x), **TOLERANCE)
    assert torch.cuda.current_device() == 1

    # Device buffers: a clear error naming both devices, before any work is enqueued.
    with pytest.raises(kiln.DeviceError, match=current_device_error(current=1, engine=0)):
        run_bound(engine, x0, y0)
    assert torch.cuda.current_device() == 1
    assert np.isnan(read(y0)).all()

    # The failed call left the context usable.
    torch.cuda.set_device(0)
    run_bound(engine, x0, y0)
    np.testing.assert_allclose(read(y0), reference(x), **TOLERANCE)


# ---- 3. safe mode on: the same call works and the current device is kept ----------------------


def test_safe_mode_plain_call_runs_on_the_engines_gpu_and_restores_the_device(
        cuda_bytes, reference, capfd):
    engine = load_on(0, cuda_bytes)
    x0, y0 = on(0, host_input(0)), nan_output(0)
    torch.cuda.set_device(1)
    capfd.readouterr()
    lib = _capi.runtime()
    assert lib.kiln_set_multi_device_safe_mode(1) == 0  # returns the previous mode
    try:
        assert lib.kiln_get_multi_device_safe_mode() == 1
        for seed in (7, 8, 9):  # eager, graph capture, graph replay: all switched to GPU 0
            x = host_input(seed)
            x0.copy_(torch.from_numpy(x))
            run_bound(engine, x0, y0)
            assert torch.cuda.current_device() == 1
            np.testing.assert_allclose(read(y0), reference(x), **TOLERANCE)
    finally:
        assert lib.kiln_set_multi_device_safe_mode(0) == 1
    assert lib.kiln_get_multi_device_safe_mode() == 0
    assert capfd.readouterr().err.count(safe_mode_warning(current=1, engine=0)) == 1  # once

    # Off again: the same call is refused again.
    with pytest.raises(kiln.DeviceError, match=current_device_error(current=1, engine=0)):
        run_bound(engine, x0, y0)


def test_safe_mode_context_manager_restores_the_previous_mode(cuda_bytes, reference):
    engine = load_on(0, cuda_bytes)
    x = host_input(10)
    x0, y0 = on(0, x), nan_output(0)
    torch.cuda.set_device(1)
    with kr.set_multi_device_safe_mode(True) as setting:
        assert setting.previous is False
        assert safe_mode_lib() == 1  # one mode per process: torch's ops and the C API share it
        run_bound(engine, x0, y0)
        assert torch.cuda.current_device() == 1
    np.testing.assert_allclose(read(y0), reference(x), **TOLERANCE)
    assert safe_mode_lib() == 0 and kr.get_multi_device_safe_mode() is False
    with pytest.raises(kiln.DeviceError, match=current_device_error(current=1, engine=0)):
        run_bound(engine, x0, y0)

    # A mode that was already on stays on after a nested block, and the plain call sets it too.
    kr.set_multi_device_safe_mode(True)
    with kr.set_multi_device_safe_mode(True) as nested:
        assert nested.previous is True
    assert safe_mode_lib() == 1
    with kr.set_multi_device_safe_mode(False):
        assert safe_mode_lib() == 0
    assert safe_mode_lib() == 1
    kr.set_multi_device_safe_mode(False)
    assert safe_mode_lib() == 0


# ---- 4. buffers in memory of the other GPU ----------------------------------------------------


@pytest.mark.parametrize("safe_mode", [0, 1], ids=["safe_mode_off", "safe_mode_on"])
def test_buffers_on_the_other_gpu_are_rejected_naming_tensor_and_devices(
        cuda_bytes, reference, safe_mode):
    engine = load_on(0, cuda_bytes)
    x = host_input(12)
    x0, y0, x1, y1 = on(0, x), nan_output(0), on(1, x), nan_output(1)
    _capi.runtime().kiln_set_multi_device_safe_mode(safe_mode)
    for graphs in (True, False):  # kernels would read caller pointers directly without graphs
        engine.set_cuda_graphs(graphs)
        with pytest.raises(kiln.InvalidArgumentError,
                           match=buffer_device_error("input", "x", buffer=1, engine=0)):
            run_bound(engine, x1, y0)
        with pytest.raises(kiln.InvalidArgumentError,
                           match=buffer_device_error("output", "y", buffer=1, engine=0)):
            run_bound(engine, x0, y1)
    assert torch.cuda.current_device() == 0
    assert np.isnan(read(y0)).all() and np.isnan(read(y1)).all()
    run_bound(engine, x0, y0)  # nothing sticky: the right buffers still work
    np.testing.assert_allclose(read(y0), reference(x), **TOLERANCE)


# ---- 5. a thread per GPU ----------------------------------------------------------------------


def test_thread_per_gpu_runs_concurrently_with_correct_outputs(cuda_bytes, reference):
    inputs = {gpu: [host_input(1000 * (gpu + 1) + k) for k in range(CALLS_PER_THREAD)]
              for gpu in (0, 1)}
    start = threading.Barrier(2, timeout=120)
    outputs: dict[int, list[torch.Tensor]] = {}
    failures: dict[int, BaseException] = {}

    def serve(gpu: int) -> None:
        try:
            torch.cuda.set_device(gpu)  # per thread, as the documented pattern does
            engine = kiln.Engine(cuda_bytes)  # binds to this thread's current GPU
            _ENGINES.append((gpu, engine))
            stream = torch.cuda.Stream(device=gpu)
            xs = [on(gpu, x) for x in inputs[gpu]]
            ys = [nan_output(gpu) for _ in xs]
            torch.cuda.synchronize(gpu)
            start.wait()
            for x, y in zip(xs, ys):  # safe mode off: each thread's current device is its GPU
                run_bound(engine, x, y, stream=stream.cuda_stream)
            stream.synchronize()
            assert torch.cuda.current_device() == gpu
            outputs[gpu] = ys
        except BaseException as e:  # reported by the main thread
            failures[gpu] = e
            start.abort()

    threads = [threading.Thread(target=serve, args=(gpu,), name=f"kiln-gpu{gpu}") for gpu in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a serving thread hung"
    for gpu, failure in failures.items():
        if not isinstance(failure, threading.BrokenBarrierError):
            raise AssertionError(f"thread for cuda:{gpu} failed: {failure!r}") from failure
    assert not failures, failures
    for gpu in (0, 1):
        assert len(outputs[gpu]) == CALLS_PER_THREAD
        for k, y in enumerate(outputs[gpu]):
            assert y.device == torch.device("cuda", gpu)
            np.testing.assert_allclose(y.cpu().numpy(), reference(inputs[gpu][k]), **TOLERANCE,
                                       err_msg=f"cuda:{gpu}, call {k}")


# ---- 6. torch: torch.classes.kiln.Engine on cuda:1 ---------------------------------------------


@pytest.fixture(scope="module")
def torch_engine_gpu1(cuda_bytes):
    kr.load_library()
    engine = kr.engine_from_bytes(cuda_bytes, "cuda:1")
    _ENGINES.append((1, engine))
    return engine


def test_torch_engine_on_cuda1_device_errors_and_safe_mode(torch_engine_gpu1, reference):
    engine = torch_engine_gpu1
    assert engine.backend() == "cuda" and engine.device_index() == 1
    x = host_input(20)
    want = torch.from_numpy(reference(x))
    x0, x1 = on(0, x), on(1, x)
    assert torch.cuda.current_device() == 0 and not kr.get_multi_device_safe_mode()

    # Inputs on another GPU: named, with both devices.
    with pytest.raises(RuntimeError, match=re.escape(
            "kiln::execute_engine: input 0 ('x') is on cuda:0 but the engine runs on cuda:1; move "
            "the input there or turn on multi-device safe mode "
            "(kiln.runtime.set_multi_device_safe_mode)")):
        kr.execute(engine, [x0])
    # Inputs on the engine's GPU but GPU 0 current: the runtime's check, through the op.
    with pytest.raises(RuntimeError, match="kiln::execute_engine: " + current_device_error(
            current=0, engine=1)):
        kr.execute(engine, [x1])
    assert torch.cuda.current_device() == 0

    # Safe mode as a context manager: runs on cuda:1, GPU 0 stays current, the mode is restored.
    with kr.set_multi_device_safe_mode(True):
        (y,) = kr.execute(engine, [x1])
        assert torch.cuda.current_device() == 0
        (y_moved,) = kr.execute(engine, [x0])  # moved to cuda:1 first
        assert torch.cuda.current_device() == 0
    assert not kr.get_multi_device_safe_mode()
    for result in (y, y_moved):
        assert result.device == torch.device("cuda", 1)
        torch.testing.assert_close(result.cpu(), want, **TOLERANCE)

    # Without safe mode, the caller makes the engine's GPU current.
    torch.cuda.set_device(1)
    (y,) = kr.execute(engine, [x1])
    assert y.device == torch.device("cuda", 1)
    torch.testing.assert_close(y.cpu(), want, **TOLERANCE)


def test_torch_engine_asked_for_cuda1_while_gpu0_is_current(cuda_bytes, reference):
    kr.load_library()
    data = torch.frombuffer(bytearray(cuda_bytes), dtype=torch.uint8)
    engine = torch.classes.kiln.Engine(data, 1)
    _ENGINES.append((1, engine))
    assert engine.device_index() == 1 and torch.cuda.current_device() == 0
    x = host_input(21)
    torch.cuda.set_device(1)
    (y,) = torch.ops.kiln.execute_engine([on(1, x)], engine)
    torch.testing.assert_close(y.cpu(), torch.from_numpy(reference(x)), **TOLERANCE)
