"""libkiln_torch.so and kiln.runtime in one process: torch.classes.kiln.Engine, the
kiln::execute_engine op and its fake kernel, pickling into TorchScript and ExportedProgram files,
safe mode, threads, and the errors a user meets (each message names the problem).

Runs on CPU engines (CI has no GPU); on a machine with a GPU the CUDA cases run too."""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

import pytest
import torch

import engine_bytes as eb
import kiln
import kiln.runtime as kr
import kiln_torch_testing as kt

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def loaded():
    return kr.load_library(kt.torch_lib())


@pytest.fixture(scope="module")
def mlp():
    data, model = kt.build_mlp_engine()
    return data, model


@pytest.fixture(scope="module")
def mlp_engine(mlp):
    return kr.engine_from_bytes(mlp[0])


@pytest.fixture(scope="module")
def two_io():
    data = kt.build_two_io_engine()
    return data, kr.engine_from_bytes(data)


# ---- loading and the class -----------------------------------------------------------------------

def test_library_registers_class_and_ops():
    assert kr.is_loaded()
    assert hasattr(torch.classes.kiln, "Engine")
    for op in ("execute_engine", "set_multi_device_safe_mode", "get_multi_device_safe_mode",
               "runtime_version", "engine_format_version"):
        assert hasattr(torch.ops.kiln, op), op


def test_versions_match_the_runtime_library():
    assert kr.runtime_version() == kiln.runtime_version()
    assert kr.engine_format_version() == kiln.engine_format_version()
    assert torch.ops.kiln.runtime_version() == kiln.runtime_version()


def test_load_library_twice_is_harmless():
    kr.load_library()
    kr.load_library(kt.torch_lib())
    assert kr.is_loaded()


def test_load_library_missing_path_is_clear(tmp_path):
    with pytest.raises(kr.RuntimeLibraryNotFoundError, match="cannot load .*: no such file"):
        kr.load_library(tmp_path / "libkiln_torch.so")


def test_engine_describes_its_bindings(mlp_engine, mlp):
    e = mlp_engine
    assert e.input_names() == ["x"]
    assert e.output_names() == ["y"]
    assert e.input_dtypes() == ["float32"]
    assert e.output_dtypes() == ["float32"]
    assert e.input_shapes() == [[-1, 8]]
    assert e.output_shapes() == [[-1, 4]]
    assert e.input_min_shapes() == [[1, 8]]
    assert e.input_max_shapes() == [[16, 8]]
    assert e.backend() == "cpu"
    assert e.device_index() == -1
    serialized = e.serialized()
    assert serialized.dtype == torch.uint8 and serialized.dim() == 1
    assert bytes(serialized.numpy()) == mlp[0]


def test_constructor_from_python_directly(mlp):
    tensor = torch.frombuffer(bytearray(mlp[0]), dtype=torch.uint8)
    e = torch.classes.kiln.Engine(tensor)  # device defaults to -1
    assert e.backend() == "cpu"
    tensor.zero_()  # the engine keeps its own copy
    x = torch.randn(2, 8)
    torch.testing.assert_close(kr.execute(e, [x])[0], mlp[1](x), rtol=1e-5, atol=1e-5)


def test_engine_from_tensor_and_memoryview(mlp):
    t = torch.frombuffer(bytearray(mlp[0]), dtype=torch.uint8)
    assert kr.engine_from_bytes(t).input_names() == ["x"]
    assert kr.engine_from_bytes(memoryview(mlp[0])).input_names() == ["x"]


def test_constructor_rejects_non_byte_tensors():
    with pytest.raises(RuntimeError, match="uint8"):
        torch.classes.kiln.Engine(torch.zeros(4, dtype=torch.float32), -1)
    with pytest.raises(RuntimeError, match="1-D"):
        torch.classes.kiln.Engine(torch.zeros(2, 2, dtype=torch.uint8), -1)


# ---- running -------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3, 16])
def test_execute_matches_eager(mlp_engine, mlp, batch):
    x = torch.randn(batch, 8)
    (y,) = kr.execute(mlp_engine, [x])
    assert y.shape == (batch, 4) and y.dtype == torch.float32 and y.device.type == "cpu"
    torch.testing.assert_close(y, mlp[1](x), rtol=1e-5, atol=1e-5)


def test_non_contiguous_input_is_made_contiguous(mlp_engine, mlp):
    base = torch.randn(8, 6)
    x = base.t()[:, :]  # [6, 8], transposed strides
    assert not x.is_contiguous()
    torch.testing.assert_close(kr.execute(mlp_engine, [x])[0], mlp[1](x), rtol=1e-5, atol=1e-5)
    sliced = torch.randn(4, 16)[:, ::2]
    assert not sliced.is_contiguous()
    torch.testing.assert_close(kr.execute(mlp_engine, [sliced])[0], mlp[1](sliced), rtol=1e-5, atol=1e-5)


def test_two_inputs_two_outputs_and_int64(two_io):
    _, e = two_io
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    s, c = kr.execute(e, [a, b])
    es, ec = kt.two_io_eager(a, b)
    torch.testing.assert_close(s, es, rtol=1e-5, atol=1e-5)
    assert c.dtype == torch.int64
    assert torch.equal(c, ec)


@pytest.mark.parametrize("dtype,elem", [(torch.uint16, 4), (torch.uint32, 12), (torch.uint64, 13)],
                         ids=["uint16", "uint32", "uint64"])
def test_unsigned_tensors_map_to_torch_unsigned_dtypes(dtype, elem):
    from onnx import helper
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info(n, elem, [3]) for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", elem, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    e = kr.engine_from_bytes(kiln.build_onnx(model))
    top = (1 << (8 * dtype.itemsize)) - 1
    # torch has few kernels for these types (no arange, no add): build them from int64 bits.
    a = torch.tensor([top if top < 2**63 else -1, 5, 0], dtype=torch.int64).to(dtype)
    b = torch.tensor([1, 2, 0], dtype=torch.int64).to(dtype)
    (y,) = kr.execute(e, [a, b])
    assert y.dtype == dtype
    assert y.to(torch.int64).tolist() == [0, 7, 0]  # top + 1 wraps to 0


def test_outputs_are_fresh_tensors(mlp_engine):
    x = torch.randn(2, 8)
    first = kr.execute(mlp_engine, [x])[0]
    kept = first.clone()
    second = kr.execute(mlp_engine, [x * 2])[0]
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, kept)


def test_inference_mode_and_no_grad(mlp_engine, mlp):
    x = torch.randn(3, 8)
    with torch.inference_mode():
        y = kr.execute(mlp_engine, [x])[0]
    with torch.no_grad():
        z = kr.execute(mlp_engine, [x])[0]
    torch.testing.assert_close(y, z)


def test_threads_share_one_engine(mlp_engine, mlp):
    inputs = [torch.randn(b % 5 + 1, 8) for b in range(8)]
    expected = [mlp[1](x) for x in inputs]
    errors = []
    barrier = threading.Barrier(4)

    def worker(k):
        try:
            barrier.wait()
            for step in range(25):
                i = (k + step) % len(inputs)
                torch.testing.assert_close(kr.execute(mlp_engine, [inputs[i]])[0], expected[i],
                                           rtol=1e-5, atol=1e-5)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Contexts were pooled, not one per call; at most one per concurrent caller.
    assert 1 <= mlp_engine.idle_contexts() <= 4


# ---- input checks --------------------------------------------------------------------------------

def test_wrong_dtype_names_binding(mlp_engine):
    with pytest.raises(RuntimeError, match=r"input 0 \('x'\): expected dtype float32, got Half"):
        kr.execute(mlp_engine, [torch.randn(2, 8).half()])
    with pytest.raises(RuntimeError, match=r"input 0 \('x'\): expected dtype float32"):
        kr.execute(mlp_engine, [torch.zeros(2, 8, dtype=torch.complex64)])


def test_wrong_shape_names_binding_expected_and_got(mlp_engine):
    with pytest.raises(RuntimeError, match=r"input 0 \('x'\): expected shape \[-1 \(1\.\.16\), 8\], got \[2, 7\]"):
        kr.execute(mlp_engine, [torch.randn(2, 7)])
    with pytest.raises(RuntimeError, match=r"expected shape .* got \[2, 8, 1\]"):
        kr.execute(mlp_engine, [torch.randn(2, 8, 1)])
    with pytest.raises(RuntimeError, match=r"got \[17, 8\]"):  # outside the profile
        kr.execute(mlp_engine, [torch.randn(17, 8)])


def test_wrong_input_count(two_io):
    _, e = two_io
    with pytest.raises(RuntimeError, match=r"takes 2 input\(s\) \('a', 'b'\), got 1"):
        kr.execute(e, [torch.randn(2, 3)])


def test_wrong_device_on_cpu_engine(mlp_engine):
    # The CPU kernel itself, given a tensor that is not on the CPU (CI has no GPU; meta stands in).
    op = torch.ops.kiln.execute_engine.default
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match=r"input 0 \('x'\) is on meta but the engine runs on cpu"):
        op.redispatch(keys, [torch.empty(2, 8, device="meta")], mlp_engine)
    if HAS_CUDA:
        with pytest.raises(RuntimeError, match=r"is on cuda:0 but the engine runs on cpu"):
            kr.execute(mlp_engine, [torch.randn(2, 8, device="cuda")])


def test_engine_usable_after_errors(mlp_engine, mlp):
    with pytest.raises(RuntimeError):
        kr.execute(mlp_engine, [torch.randn(2, 9)])
    x = torch.randn(2, 8)
    torch.testing.assert_close(kr.execute(mlp_engine, [x])[0], mlp[1](x), rtol=1e-5, atol=1e-5)


# ---- engine bytes the runtime rejects ------------------------------------------------------------

def test_newer_format_major_is_a_clear_error(mlp):
    with pytest.raises(RuntimeError, match=r"engine format 2\.0 .* newer than this runtime's 1\.1"):
        kr.engine_from_bytes(eb.with_version(mlp[0], 2, 0))


def test_corrupt_bytes_are_a_clear_error(mlp):
    damaged = bytearray(mlp[0])
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(RuntimeError, match="checksum|corrupt"):
        kr.engine_from_bytes(bytes(damaged))
    with pytest.raises(RuntimeError, match="cannot load the engine"):
        kr.engine_from_bytes(b"")


def test_cuda_engine_without_gpu_is_a_clear_error(mlp):
    if HAS_CUDA:
        # With a GPU: an architecture no GPU has is the error a mismatched machine gives.
        crafted = kt.with_target(mlp[0], "cuda", 10, "imaginary GPU")
        with pytest.raises(RuntimeError, match=r"sm_10"):
            kr.engine_from_bytes(crafted)
    else:
        crafted = kt.with_target(mlp[0], "cuda", 90, "NVIDIA H100 80GB HBM3")
        with pytest.raises(RuntimeError, match=r"engine targets cuda sm_90 .*(without CUDA|no CUDA device)"):
            kr.engine_from_bytes(crafted)


def test_cpu_engine_asked_for_a_gpu(mlp):
    with pytest.raises(RuntimeError, match="built for the cpu backend"):
        kr.engine_from_bytes(mlp[0], device=0)


# ---- safe mode -----------------------------------------------------------------------------------

def test_safe_mode_call_and_context_manager():
    assert kr.get_multi_device_safe_mode() is False
    setting = kr.set_multi_device_safe_mode(True)
    try:
        assert setting.previous is False
        assert kr.get_multi_device_safe_mode() is True
        assert torch.ops.kiln.get_multi_device_safe_mode() is True
        with kr.set_multi_device_safe_mode(False):
            assert kr.get_multi_device_safe_mode() is False
        assert kr.get_multi_device_safe_mode() is True  # restored to the prior mode
    finally:
        kr.set_multi_device_safe_mode(False)
    with kr.set_multi_device_safe_mode(True) as inner:
        assert inner.previous is False and kr.get_multi_device_safe_mode()
    assert kr.get_multi_device_safe_mode() is False
    assert torch.ops.kiln.set_multi_device_safe_mode(False) is False


def test_safe_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with kr.set_multi_device_safe_mode(True):
            raise ValueError("boom")
    assert kr.get_multi_device_safe_mode() is False


def test_safe_mode_moves_inputs_to_the_engine_device(mlp_engine, mlp):
    # On: an input on another device is moved to the engine's (here: meta -> cpu is impossible,
    # so a CPU engine with CPU inputs must still work; GPUs are tested on the GPU machine).
    x = torch.randn(2, 8)
    with kr.set_multi_device_safe_mode(True):
        torch.testing.assert_close(kr.execute(mlp_engine, [x])[0], mlp[1](x), rtol=1e-5, atol=1e-5)
        if HAS_CUDA:
            y = kr.execute(mlp_engine, [x.cuda()])[0]
            assert y.device.type == "cpu"
            torch.testing.assert_close(y, mlp[1](x), rtol=1e-5, atol=1e-5)


# ---- the fake kernel and torch.export ------------------------------------------------------------

def test_fake_kernel_dynamic_batch_follows_first_input(mlp_engine):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(shape_env=ShapeEnv())
    with mode:
        x = mode.from_tensor(torch.randn(5, 8))
        (y,) = torch.ops.kiln.execute_engine([x], mlp_engine)
    assert tuple(y.shape) == (5, 4) and y.dtype == torch.float32
    # The same from the fake class torch.export builds from __obj_flatten__.
    fake_engine = kr.FakeEngine.__obj_unflatten__(mlp_engine.__obj_flatten__())
    assert fake_engine.output_shapes() == [[-1, 4]] and fake_engine.has_dynamic_batch()
    with mode:
        (z,) = kr._fake_execute_engine([x], fake_engine)
    assert tuple(z.shape) == (5, 4)


def test_export_dynamic_batch_and_run(mlp_engine, mlp, tmp_path):
    module = kt.EngineModule(mlp_engine)
    batch = torch.export.Dim("batch", min=1, max=16)
    exported = torch.export.export(module, (torch.randn(4, 8),), dynamic_shapes=({0: batch},))
    graph = str(exported.graph)
    assert "torch.ops.kiln.execute_engine.default" in graph
    out_meta = [n for n in exported.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    in_meta = [n for n in exported.graph.nodes if n.op == "placeholder"][-1].meta["val"]
    assert out_meta.shape[0] == in_meta.shape[0]  # the same symbol: the batch
    torch.export.save(exported, str(tmp_path / "m.pt2"))
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    for b in (1, 7, 16):
        x = torch.randn(b, 8)
        torch.testing.assert_close(loaded(x), mlp[1](x), rtol=1e-5, atol=1e-5)


def test_export_other_dynamic_dims_are_unbacked(tmp_path):
    e = kr.engine_from_bytes(kt.build_seq_engine())
    assert e.input_shapes() == [[2, -1]]
    module = kt.EngineModule(e)
    exported = torch.export.export(module, (torch.randn(2, 5),),
                                   dynamic_shapes=({1: torch.export.Dim("seq", min=1, max=32)},))
    out_meta = [n for n in exported.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    assert out_meta.shape[0] == 2
    assert isinstance(out_meta.shape[1], torch.SymInt)
    assert str(out_meta.shape[1]).startswith("u")  # a new unbacked size, not the input's symbol
    torch.export.save(exported, str(tmp_path / "seq.pt2"))
    loaded = torch.export.load(str(tmp_path / "seq.pt2")).module()
    x = torch.randn(2, 9)
    torch.testing.assert_close(loaded(x), -x)


def test_two_io_module_round_trips_both_formats(two_io, tmp_path):
    _, e = two_io
    module = kt.TwoInputModule(e)
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    ts, pt2 = kt.save_programs(module, (a, b), tmp_path, "two")
    for loaded in (torch.jit.load(str(ts)), torch.export.load(str(pt2)).module()):
        for n in (1, 6):
            a, b = torch.randn(n, 3), torch.randn(n, 3)
            s, c = loaded(a, b)
            es, ec = kt.two_input_module_eager(a, b)
            torch.testing.assert_close(s, es, rtol=1e-5, atol=1e-5)
            assert torch.equal(c, ec)


class ReshapeByValue(torch.nn.Module):
    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, x, shape):
        return torch.ops.kiln.execute_engine([x, shape], self.engine)[0]


def test_output_shapes_from_input_values(tmp_path):
    """A CPU engine whose output shape depends on an input's values (Reshape by a runtime shape):
    output sizes come from the runtime for each call, and tracing gives unbacked sizes."""
    e = kr.engine_from_bytes(kt.build_reshape_by_value_engine())
    assert e.output_shapes() == [[-1, -1]]
    x = torch.arange(12.0)
    for shape in ([3, 4], [2, 6], [12, 1]):
        (y,) = kr.execute(e, [x, torch.tensor(shape)])
        assert torch.equal(y, x.reshape(shape))
    exported = torch.export.export(ReshapeByValue(e), (x, torch.tensor([3, 4])),
                                   dynamic_shapes=({0: torch.export.Dim("n", min=2, max=64)}, None))
    out_meta = [n for n in exported.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    assert all(str(d).startswith("u") for d in out_meta.shape)  # not the batch: no dynamic batch
    torch.export.save(exported, str(tmp_path / "r.pt2"))
    loaded = torch.export.load(str(tmp_path / "r.pt2")).module()
    assert loaded(torch.arange(20.0), torch.tensor([4, 5])).shape == (4, 5)


# ---- pickling ------------------------------------------------------------------------------------

def test_torchscript_round_trip_keeps_engine(mlp_engine, mlp, tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(kt.EngineModule(mlp_engine)), str(path))
    loaded = torch.jit.load(str(path))
    assert bytes(loaded.engine.serialized().numpy()) == mlp[0]
    x = torch.randn(3, 8)
    torch.testing.assert_close(loaded(x), mlp[1](x), rtol=1e-5, atol=1e-5)


def test_deepcopy_and_script_pickle(mlp_engine, mlp):
    import copy

    clone = copy.deepcopy(mlp_engine)
    x = torch.randn(2, 8)
    torch.testing.assert_close(kr.execute(clone, [x])[0], mlp[1](x), rtol=1e-5, atol=1e-5)
    again = torch._C._pickle_load_obj(torch._C._pickle_save(mlp_engine))
    assert again.input_names() == ["x"]


def test_state_is_versioned(mlp_engine, mlp):
    state, class_name = mlp_engine.__getstate__()
    assert class_name == "__torch__.torch.classes.kiln.Engine"
    version, data, device = state
    assert version == 1 and device == -1
    assert bytes(data.numpy()) == mlp[0]


def test_newer_state_version_in_torchscript_is_a_clear_error(mlp_engine, tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(kt.EngineModule(mlp_engine)), str(path))
    assert kt.set_state_version_in_program(path, 2) == 1
    with pytest.raises(RuntimeError, match=r"saved by a newer kiln \(engine state version 2\).*reads state "
                                           r"versions up to 1"):
        torch.jit.load(str(path))


def test_newer_state_version_in_exported_program_is_a_clear_error(mlp_engine, tmp_path, caplog):
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(kt.EngineModule(mlp_engine), (torch.randn(2, 8),)), str(path))
    assert kt.set_state_version_in_program(path, 3) >= 1
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError):
        torch.export.load(str(path))
    # torch.export.load logs the cause as a warning and raises a generic error.
    assert "engine state version 3" in caplog.text


def test_newer_engine_format_inside_saved_programs(mlp_engine, mlp, tmp_path, caplog):
    newer = eb.with_version(mlp[0], 2, 0)
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(kt.EngineModule(mlp_engine)), str(ts))
    assert kt.replace_engine_in_program(ts, mlp[0], newer) == 1
    with pytest.raises(RuntimeError, match=r"engine format 2\.0 .* newer than this runtime's"):
        torch.jit.load(str(ts))
    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(kt.EngineModule(mlp_engine), (torch.randn(2, 8),)), str(pt2))
    assert kt.replace_engine_in_program(pt2, mlp[0], newer) >= 1
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError):
        torch.export.load(str(pt2))
    assert "engine format 2.0" in caplog.text


# ---- library dependencies ------------------------------------------------------------------------

def test_torch_library_depends_on_runtime_and_torch_only():
    out = subprocess.run(["readelf", "-d", str(kt.torch_lib())], capture_output=True, text=True,
                         check=True).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    assert "libkiln_runtime.so" in needed
    assert any(n.startswith(("libtorch", "libc10")) for n in needed), needed
    for forbidden in ("libkiln.so", "protobuf", "onnx", "libpython"):
        assert not any(forbidden in n for n in needed), (forbidden, needed)


def test_torch_library_exports_only_kiln_symbols():
    out = subprocess.run(["nm", "-D", "--defined-only", "-C", str(kt.torch_lib())], capture_output=True,
                         text=True, check=True).stdout
    symbols = [line.split(" ", 2)[2] for line in out.splitlines() if line.count(" ") >= 2]
    assert symbols, "no exported symbols listed"
    strays = [s for s in symbols if "kiln" not in s]
    assert not strays, strays[:10]


# ---- CUDA engines (the GPU machine; without a GPU each case asserts what a CPU-only build does) ----

@pytest.fixture(scope="module")
def cuda_mlp(mlp):
    _, model = mlp
    if not HAS_CUDA:
        return None
    data = kiln.build_onnx(kt.mlp_onnx(model), target="cuda",
                           profiles={"x": ([1, 8], [4, 8], [16, 8])})
    return kr.engine_from_bytes(data), model


def test_cuda_engine_describes_its_device(cuda_mlp):
    if not HAS_CUDA:
        with pytest.raises(RuntimeError, match="built without CUDA|no CUDA device"):
            kr.engine_from_bytes(kt.with_target(kt.build_mlp_engine()[0], "cuda", 90))
        return
    e, _ = cuda_mlp
    assert e.backend() == "cuda"
    assert e.device_index() == torch.cuda.current_device()


def test_cuda_engine_runs_on_the_current_stream(cuda_mlp):
    if not HAS_CUDA:
        assert kr.get_multi_device_safe_mode() is False
        return
    e, model = cuda_mlp
    side = torch.cuda.Stream()
    x_host = torch.randn(16, 8)
    with torch.cuda.stream(side):
        # Work queued on the side stream just before the call: the engine must run after it on
        # the same stream (no synchronisation in between) to see the final values of x.
        big = torch.randn(4096, 4096, device="cuda")
        for _ in range(4):
            big = big @ big / 4096.0
        x = x_host.cuda(non_blocking=False) + big[0, 0] * 0.0
        (y,) = kr.execute(e, [x])
    side.synchronize()
    assert y.device == torch.device("cuda", e.device_index())
    torch.testing.assert_close(y.cpu(), model(x.cpu()), rtol=1e-3, atol=1e-3)


def test_cuda_engine_input_device_checks_and_safe_mode(cuda_mlp):
    if not HAS_CUDA:
        return
    e, model = cuda_mlp
    x = torch.randn(3, 8)
    with pytest.raises(RuntimeError, match=r"input 0 \('x'\) is on cpu but the engine runs on cuda:\d; "
                                           r"move the input there or turn on multi-device safe mode"):
        kr.execute(e, [x])
    with kr.set_multi_device_safe_mode(True):
        (y,) = kr.execute(e, [x])  # moved to the engine's GPU
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), model(x), rtol=1e-3, atol=1e-3)


def test_cuda_engine_round_trips_and_exports(cuda_mlp, tmp_path):
    if not HAS_CUDA:
        return
    e, model = cuda_mlp
    module = kt.EngineModule(e)
    ts, pt2 = kt.save_programs(module, (torch.randn(2, 8, device="cuda"),), tmp_path, "cuda_mlp")
    x = torch.randn(5, 8, device="cuda")
    for loaded in (torch.jit.load(str(ts)), torch.export.load(str(pt2)).module()):
        y = loaded(x)
        assert y.is_cuda
        torch.testing.assert_close(y.cpu(), model(x.cpu()), rtol=1e-3, atol=1e-3)
