"""Plugin layers on the CUDA backend (src/backends/cuda/plugin_kernels.cpp) and data-dependent output
shapes on CUDA (run segment by segment, src/backends/cuda/cuda_executor.cpp): libkiln_plugins.so's
NMS (data-dependent), RoiAlign, DeformConv and fixed-size batched NMS in cuda engines, compared with
the same models' cpu engines; the real output shapes through kiln.Engine (host and device buffers)
and torch.ops.kiln.execute_engine; the fixed-size NMS inside a CUDA-graph-captured engine; the C test
plugin (CPU only) refused for cuda with a clear error. The models: tests/python/cuda_plugin_models.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln
import kiln.runtime as kr
from cuda_plugin_models import (MODELS, NMS_BOXES, NMS_MAX_PER_CLASS, PADDED_KEEP, batched_nms_padded_feeds,
                                batched_nms_padded_model, nms_feeds, nms_model)
from kiln_plugins_testing import load

BUILD_DIR = Path(os.environ.get("KILN_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))

# Each case: feeds that keep different numbers of boxes (1.0 packs them, 40.0 spreads them).
NMS_CASES = [(0, 1.0), (1, 10.0), (2, 40.0), (3, 1.0)]  # (seed, spread)


@pytest.fixture(scope="module")
def plugins():
    return load(BUILD_DIR)


def engines(model):
    return kiln.Engine(kiln.build_onnx(model, target="cpu")), kiln.Engine(kiln.build_onnx(model, target="cuda"))


def assert_outputs_match(got: dict, want: dict, what: str, rtol=1e-4, atol=1e-4):
    assert list(got) == list(want), f"{what}: outputs {list(got)} vs the cpu engine's {list(want)}"
    for name in want:
        g, w = got[name], want[name]
        assert g.dtype == w.dtype and g.shape == w.shape, \
            f"{what}: output '{name}' is {g.dtype}{g.shape} on cuda, {w.dtype}{w.shape} on the cpu"
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: output '{name}'")
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{what}: output '{name}'")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plugin_layers_match_the_cpu_engine(plugins, name):
    build, feeds, _ = MODELS[name]
    cpu, cuda = engines(build())
    for seed in range(4):  # the first run eager, then capture and replays where the engine is captured
        inputs = nms_feeds(NMS_CASES[seed][0], spread=NMS_CASES[seed][1]) if name == "nms" else feeds(seed)
        assert_outputs_match(cuda.run(inputs), cpu.run(inputs), f"{name}, call {seed}")


def test_data_dependent_nms_gives_the_real_shape_through_kiln_engine(plugins):
    cpu, cuda = engines(nms_model())
    assert [o.name for o in cuda.outputs] == ["selected", "doubled"]
    counts = []
    for case in NMS_CASES:
        inputs = nms_feeds(case[0], spread=case[1])
        got, want = cuda.run(inputs), cpu.run(inputs)
        assert_outputs_match(got, want, f"nms feeds {case}")
        assert got["selected"].shape[1] == 3 and np.all(got["selected"][:, 2] < NMS_BOXES)
        counts.append(got["selected"].shape[0])
    assert len(set(counts)) > 1, f"the feeds should keep different numbers of boxes: {counts}"


def test_data_dependent_nms_on_device_buffers(plugins):
    cpu, cuda = engines(nms_model())
    bound = 2 * NMS_MAX_PER_CLASS  # the upper bound of selected's rows
    for case in NMS_CASES:
        inputs = nms_feeds(case[0], spread=case[1])
        want = cpu.run(inputs)
        dev_in = {k: torch.from_numpy(v).cuda() for k, v in inputs.items()}
        # Buffers at the bound, filled with a marker so that rows written past the real count show.
        selected = torch.full((bound, 3), -7, dtype=torch.int64, device="cuda")
        doubled = torch.full((bound, 3), -7.0, dtype=torch.float32, device="cuda")
        stream = torch.cuda.current_stream()
        shapes = cuda.run_bound({k: (t.data_ptr(), tuple(t.shape), inputs[k].dtype) for k, t in dev_in.items()},
                                {"selected": (selected.data_ptr(), (bound, 3), np.int64),
                                 "doubled": (doubled.data_ptr(), (bound, 3), np.float32)},
                                stream=stream.cuda_stream)
        stream.synchronize()
        rows = want["selected"].shape[0]
        assert tuple(shapes["selected"]) == (rows, 3) and tuple(shapes["doubled"]) == (rows, 3), \
            f"feeds {case}: run_bound reported {shapes}, the cpu engine kept {rows} rows"
        np.testing.assert_array_equal(selected.cpu().numpy().reshape(-1)[:rows * 3].reshape(rows, 3),
                                      want["selected"])
        np.testing.assert_array_equal(doubled.cpu().numpy().reshape(-1)[:rows * 3].reshape(rows, 3),
                                      want["doubled"])
    # A buffer smaller than the bound is refused before anything runs, naming the output.
    inputs = {k: torch.from_numpy(v).cuda() for k, v in nms_feeds(0).items()}
    small = torch.empty((4, 3), dtype=torch.int64, device="cuda")
    doubled = torch.empty((bound, 3), dtype=torch.float32, device="cuda")
    with pytest.raises(kiln.InvalidArgumentError, match="output 'selected'"):
        cuda.run_bound({k: (t.data_ptr(), tuple(t.shape), np.float32) for k, t in inputs.items()},
                       {"selected": (small.data_ptr(), (4, 3), np.int64),
                        "doubled": (doubled.data_ptr(), (bound, 3), np.float32)})


def test_data_dependent_nms_through_torch_ops(plugins):
    # The NMS output alone: execute_engine allocates each output at output_shapes() (the bound
    # for a data-dependent layer's own output) and returns the part the run wrote.
    model = nms_model(with_consumer=False)
    cpu = kiln.Engine(kiln.build_onnx(model, target="cpu"))
    kr.load_library()
    engine = kr.engine_from_bytes(kiln.build_onnx(model, target="cuda"), "cuda:0")
    for case in NMS_CASES:
        inputs = nms_feeds(case[0], spread=case[1])
        want = cpu.run(inputs)["selected"]
        (selected,) = torch.ops.kiln.execute_engine([torch.from_numpy(inputs["boxes"]).cuda(),
                                                     torch.from_numpy(inputs["scores"]).cuda()], engine)
        assert selected.device.type == "cuda" and selected.dtype == torch.int64
        assert tuple(selected.shape) == want.shape, \
            f"feeds {case}: torch.ops.kiln.execute_engine gave {tuple(selected.shape)}, the cpu engine {want.shape}"
        np.testing.assert_array_equal(selected.cpu().numpy(), want)


def test_fixed_size_batched_nms_stays_in_the_captured_graph(plugins):
    cpu, cuda = engines(batched_nms_padded_model())
    cuda.set_cuda_graphs(True)
    for seed in range(6):  # eager, capture, then replays: each with new boxes
        inputs = batched_nms_padded_feeds(seed)
        got, want = cuda.run(inputs), cpu.run(inputs)
        assert_outputs_match(got, want, f"BatchedNMSPadded, graph call {seed}")
        assert got["keep"].shape == (PADDED_KEEP,)
    cuda.set_cuda_graphs(False)
    inputs = batched_nms_padded_feeds(99)
    assert_outputs_match(cuda.run(inputs), cpu.run(inputs), "BatchedNMSPadded, without graphs")


def test_cpu_only_plugin_is_refused_for_cuda_naming_plugin_and_backend():
    from test_plugins import plugin_model  # tests/python: the C test plugin's model

    kiln.load_plugin_library(BUILD_DIR / "tests" / "plugins" / "libkiln_test_plugin.so")
    with pytest.raises(kiln.UnsupportedError, match=r"kiln.test::ScaledAdd v2 \(libkiln_test_plugin.so\), which has "
                                                    r"no CUDA implementation .* the cuda backend cannot run it"):
        kiln.build_onnx(plugin_model(), target="cuda",
                        profiles={"A": ((2, 3), (2, 3), (2, 3)), "B": ((2, 3), (2, 3), (2, 3))})
