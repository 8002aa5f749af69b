"""kiln.compile / kiln.save / kiln.load / torch.compile(backend="kiln") on CPU engines.

Small models only (the whole file runs in about a minute on two cores): each model is compiled
once per module (fixtures) and checked against eager PyTorch. float32 engines compute in exact
float32, so the tolerance is tight (atol 2e-5, rtol 1e-5: differences come from summation order
only).
"""

from __future__ import annotations

import operator
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import kiln
import kiln.runtime

ATOL, RTOL = 2e-5, 1e-5


def _eager(model: nn.Module, *inputs):
    with torch.no_grad():
        return model(*inputs)


def _assert_close(actual, expected, atol=ATOL, rtol=RTOL):
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_close(a, e, atol, rtol)
        return
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                                 nn.Linear(32, 4))

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class Block(nn.Module):
    """Transformer encoder block: multi-head attention, LayerNorm, GELU feed-forward."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):
        attended, _ = self.attention(x, x, x, need_weights=False)
        x = self.norm1(x + attended)
        return self.norm2(x + self.ff(x))


def _resample(y):
    """The modified Bessel function i0 (aten.i0) has no ONNX op, so no engine can take it: the
    exporter refuses it alone and it stays a PyTorch call. (grid_sample served here until kiln ran
    GridSample.) It reads y itself, so it cannot be folded away."""
    return torch.special.i0(y * 0.5)


class WithUnsupportedOp(nn.Module):
    """The graph is cut into an engine before the unsupported i0 and one after it. The
    second engine also reads an output of the first directly (the skip branch), and one of the
    two outputs reads the batch size (a reshape), so the second engine needs the dynamic batch."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.skip = nn.Conv2d(8, 4, 1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        skip = self.skip(y)
        y = _resample(y)
        y = torch.sigmoid(self.conv2(y) + skip)
        return self.head(y.reshape(y.shape[0], -1)), y.mean(dim=(2, 3))


def _model(cls, seed=0):
    torch.manual_seed(seed)
    model = cls().eval()
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def mlp():
    model = _model(Mlp)
    return model, kiln.compile(model, torch.randn(3, 16))


@pytest.fixture(scope="module")
def cnn():
    model = _model(SmallCnn)
    return model, kiln.compile(model, torch.randn(2, 3, 16, 16), dynamic_batch=(1, 4, 8))


@pytest.fixture(scope="module")
def block():
    model = _model(Block)
    return model, kiln.compile(model, torch.randn(2, 6, 32), dynamic_batch=(1, 2, 6))


@pytest.fixture(scope="module")
def partitioned():
    model = _model(WithUnsupportedOp)
    return model, kiln.compile(model, torch.randn(2, 3, 8, 8), dynamic_batch=(1, 2, 8))


# ---- compile -> run matches eager ---------------------------------------------------------------


def test_mlp_static_matches_eager(mlp):
    model, compiled = mlp
    x = torch.randn(3, 16)
    _assert_close(compiled(x), _eager(model, x))
    report = compiled.kiln_report
    assert len(report.engines) == 1 and report.fallbacks == [] and report.fully_compiled
    assert report.engines[0].ops["aten.addmm.default"] == 3
    # The graph calls the engine and nothing else.
    targets = [n.target for n in compiled.graph.nodes if n.op == "call_function"]
    assert torch.ops.kiln.execute_engine.default in targets
    assert not any(str(t).startswith("aten.") for t in targets)


def test_cnn_dynamic_batch_matches_eager(cnn):
    model, compiled = cnn
    assert compiled.kiln_report.fully_compiled, compiled.kiln_report
    assert compiled.kiln_report.engines[0].inputs == ["in_0: float32[-1, 3, 16, 16]"]
    for batch in (2, 5, 1, 8):
        x = torch.randn(batch, 3, 16, 16)
        _assert_close(compiled(x), _eager(model, x))


def test_transformer_block_dynamic_batch_matches_eager(block):
    model, compiled = block
    assert compiled.kiln_report.fully_compiled, compiled.kiln_report
    ops = compiled.kiln_report.engines[0].ops
    for op in ("aten._softmax.default", "aten.native_layer_norm.default", "aten.gelu.default",
               "aten.bmm.default"):
        assert op in ops, ops
    for batch in (2, 5):
        x = torch.randn(batch, 6, 32)
        _assert_close(compiled(x), _eager(model, x))


def test_unsupported_op_is_partitioned_around(partitioned):
    model, compiled = partitioned
    report = compiled.kiln_report
    assert len(report.engines) >= 2, report
    assert [(f.node, f.op) for f in report.fallbacks] == [("i0", "aten.i0.default")]
    assert "ONNX export failed" in report.fallbacks[0].reason
    assert "fallback i0: aten.i0.default" in str(report)
    # i0 itself stays an aten call between two engine calls.
    calls = [n.target for n in compiled.graph.nodes if n.op == "call_function"
             and n.target is not operator.getitem]
    position = calls.index(torch.ops.aten.i0.default)
    assert torch.ops.kiln.execute_engine.default in calls[:position]
    assert torch.ops.kiln.execute_engine.default in calls[position + 1:]
    # The second engine reads the resampled tensor and, for the skip branch, the first engine's output.
    first, second = [n for n in compiled.graph.nodes
                     if n.target is torch.ops.kiln.execute_engine.default]
    sources = {arg.args[0] if arg.target is operator.getitem else arg for arg in second.args[0]}
    assert first in sources and len(report.engines[1].inputs) == 2
    for batch in (2, 7):
        x = torch.randn(batch, 3, 8, 8)
        _assert_close(compiled(x), _eager(model, x))


def test_require_full_compilation_names_unsupported_nodes():
    model = _model(WithUnsupportedOp)
    with pytest.raises(kiln.FullCompilationError) as error:
        kiln.compile(model, torch.randn(2, 3, 8, 8), require_full_compilation=True)
    assert isinstance(error.value, kiln.UnsupportedError)
    message = str(error.value)
    assert "node 'i0': aten.i0.default" in message
    assert "ONNX export failed" in message
    assert [f.node for f in error.value.fallbacks] == ["i0"]


def test_min_block_size_leaves_small_runs_to_pytorch():
    model = _model(WithUnsupportedOp)
    compiled = kiln.compile(model, torch.randn(2, 3, 8, 8), min_block_size=100)
    report = compiled.kiln_report
    assert report.engines == []
    assert any("min_block_size=100" in f.reason for f in report.fallbacks), report
    x = torch.randn(2, 3, 8, 8)
    _assert_close(compiled(x), _eager(model, x))


# ---- 16-bit --------------------------------------------------------------------------------------


def test_fp16_module_on_cpu_engines():
    """kiln's cpu target builds float32 engines; a float16 module's engines take and return
    float16 (the CPU kernels compute in float32 and round), so compare with eager float16 at
    float16 resolution: atol 2e-3, rtol 1e-2 (eager rounds intermediates to fp16 too)."""
    reference = _model(SmallCnn)
    model = _model(SmallCnn).half()
    x = torch.randn(2, 3, 16, 16)
    compiled = kiln.compile(model, x.half())
    assert compiled.kiln_report.engines[0].inputs == ["in_0: float16[2, 3, 16, 16]"]
    out = compiled(x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, _eager(model, x.half()), atol=2e-3, rtol=1e-2)
    torch.testing.assert_close(out.float(), _eager(reference, x), atol=5e-3, rtol=1e-2)


def test_fp16_precision_needs_cuda():
    with pytest.raises(ValueError, match="needs CUDA engines"):
        kiln.compile(_model(Mlp), torch.randn(3, 16), precision="fp16")


# ---- errors at call time -------------------------------------------------------------------------


def test_wrong_input_dtype_is_a_clear_error(cnn):
    _, compiled = cnn
    with pytest.raises(RuntimeError, match=r"expected dtype float32, got Double"):
        compiled(torch.randn(2, 3, 16, 16, dtype=torch.float64))


def test_wrong_input_shape_is_a_clear_error(cnn):
    _, compiled = cnn
    with pytest.raises(Exception, match=r"size\(\)\[2\] == 16"):
        compiled(torch.randn(2, 3, 15, 16))
    # The engine op checks too (a module that bypasses the guards).
    with pytest.raises(RuntimeError, match=r"expected shape \[-1 \(1\.\.8\), 3, 16, 16\]"):
        torch.ops.kiln.execute_engine([torch.randn(2, 3, 15, 16)], compiled._kiln_engine_0)


def test_batch_outside_dynamic_range_is_a_clear_error(cnn):
    _, compiled = cnn
    with pytest.raises(Exception, match=r"size\(\)\[0\] <= 8"):
        compiled(torch.randn(9, 3, 16, 16))
    with pytest.raises(RuntimeError, match=r"1\.\.8"):
        torch.ops.kiln.execute_engine([torch.randn(9, 3, 16, 16)], compiled._kiln_engine_0)


def test_bad_dynamic_batch_arguments():
    model = _model(Mlp)
    with pytest.raises(ValueError, match="at least 2"):
        kiln.compile(model, torch.randn(1, 16), dynamic_batch=(1, 2, 4))
    with pytest.raises(ValueError, match="outside"):
        kiln.compile(model, torch.randn(6, 16), dynamic_batch=(1, 2, 4))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        kiln.compile(model, torch.randn(2, 16), dynamic_batch=(4, 2, 8))


# ---- save / load ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(partitioned, tmp_path_factory):
    """The partitioned model (engines + a PyTorch fallback, dynamic batch) in both formats."""
    _, compiled = partitioned
    folder = tmp_path_factory.mktemp("saved")
    paths = {fmt: folder / f"model.{fmt}" for fmt in ("exported_program", "torchscript")}
    for fmt, path in paths.items():
        kiln.save(compiled, path, format=fmt)
    return paths


@pytest.mark.parametrize("fmt", ["exported_program", "torchscript"])
def test_save_load_round_trip(partitioned, saved, fmt):
    model, _ = partitioned
    loaded = kiln.load(saved[fmt])
    if fmt == "torchscript":
        assert isinstance(loaded, torch.jit.ScriptModule)
    for batch in (2, 5):
        x = torch.randn(batch, 3, 8, 8)
        _assert_close(tuple(loaded(x)), _eager(model, x))


class BatchDependentFallback(nn.Module):
    """A reshape by a size computed from the batch stays in PyTorch between two unsupported
    ops."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = _resample(self.conv(x))
        # i0 again, of a view whose batch is twice the input's.
        return torch.special.i0(y.reshape(y.shape[0] * 2, 32, 2, 2))


def test_torchscript_keeps_batch_dependent_sizes_of_fallbacks(tmp_path):
    model = _model(BatchDependentFallback)
    compiled = kiln.compile(model, torch.randn(2, 3, 8, 8), dynamic_batch=(1, 2, 8))
    assert "aten.view.default" in {f.op for f in compiled.kiln_report.fallbacks}
    path = tmp_path / "model.ts"
    kiln.save(compiled, path, format="torchscript")
    loaded = kiln.load(path)
    for batch in (2, 5):  # a traced program would have fixed the reshape to batch 2
        x = torch.randn(batch, 3, 8, 8)
        _assert_close(loaded(x), _eager(model, x), atol=1e-4)


def test_save_rejects_unknown_format(mlp, tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        kiln.save(mlp[1], tmp_path / "m", format="onnx")


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "not_a_model.bin"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="neither a TorchScript nor an ExportedProgram"):
        kiln.load(path)


def test_load_in_fresh_process_with_runtime_libraries_only(partitioned, saved, tmp_path,
                                                           repo_dir):
    """A new interpreter whose library folder holds only libkiln_torch.so and
    libkiln_runtime.so loads both files, runs them and never imports the compiler side."""
    model, _ = partitioned
    lib_dir = Path(os.environ["KILN_LIB_DIR"])
    runtime_only = tmp_path / "lib"
    runtime_only.mkdir()
    for name in ("libkiln_torch.so", "libkiln_runtime.so"):
        shutil.copy2(lib_dir / name, runtime_only / name)
    x = torch.randn(3, 3, 8, 8)
    torch.save({"x": x, "expected": _eager(model, x)}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        import kiln
        data = torch.load({str(tmp_path / "io.pt")!r})
        for path in ({str(saved["exported_program"])!r}, {str(saved["torchscript"])!r}):
            out = kiln.load(path)(data["x"])
            for a, e in zip(out, data["expected"]):
                torch.testing.assert_close(a, e, atol={ATOL}, rtol={RTOL})
        compiler = [m for m in ("onnx", "onnxscript", "kiln._compile", "kiln._partition")
                    if m in sys.modules]
        assert not compiler, compiler
        maps = open("/proc/self/maps").read()
        assert "libkiln.so" not in maps, "the builder library was loaded"
        print("fresh process OK")
    """)
    env = {key: value for key, value in os.environ.items()
           if key not in ("KILN_BUILD_DIR", "LD_PRELOAD")}
    env["KILN_LIB_DIR"] = str(runtime_only)
    env["PYTHONPATH"] = str(repo_dir / "python")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fresh process OK" in result.stdout


def test_import_kiln_stays_light(repo_dir):
    script = ("import sys, kiln, kiln.runtime\n"
              "heavy = [m for m in ('onnx', 'onnxscript', 'kiln._compile') if m in sys.modules]\n"
              "assert not heavy, heavy\n"
              "assert 'torch' not in sys.modules or 'kiln.runtime' in sys.modules\n"
              "assert callable(kiln.compile) and 'kiln._compile' in sys.modules\n")
    env = dict(os.environ, PYTHONPATH=str(repo_dir / "python"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    light = subprocess.run([sys.executable, "-c",
                            "import sys, kiln; assert 'torch' not in sys.modules"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert light.returncode == 0, light.stderr


# ---- torch.compile(backend="kiln") ---------------------------------------------------------------


def test_torch_compile_backend_matches_eager():
    import kiln.torch_backend

    torch._dynamo.reset()
    model = _model(WithUnsupportedOp)
    compiled = torch.compile(model, backend="kiln")
    for batch in (2, 3):  # the second size makes Dynamo recompile shape-generically
        x = torch.randn(batch, 3, 8, 8)
        _assert_close(tuple(compiled(x)), _eager(model, x))
        report = kiln.torch_backend.kiln_backend.last_report
        assert len(report.engines) >= 2, report
        assert [f.op for f in report.fallbacks] == ["aten.i0.default"]
        # Parameters are engine constants, not engine inputs.
        assert report.engines[0].inputs == [f"in_0: float32[{batch}, 3, 8, 8]"]
    torch._dynamo.reset()


def test_torch_compile_backend_entry_point_name(repo_dir):
    from kiln.torch_backend import kiln_backend
    from torch._dynamo.backends.registry import lookup_backend

    assert lookup_backend("kiln") is kiln_backend
    # Installed packages declare `torch_dynamo_backends: kiln = kiln.torch_backend:kiln_backend`;
    # Dynamo imports the module through it and then registers the name itself.
    script = textwrap.dedent("""
        import torch._dynamo
        from torch._dynamo.backends import registry

        class EntryPoint:
            name = "kiln"
            def load(self):
                from kiln.torch_backend import kiln_backend
                return kiln_backend

        registry._lazy_import()
        registry._BACKENDS["kiln"] = EntryPoint()
        import kiln.torch_backend
        assert registry.lookup_backend("kiln") is kiln.torch_backend.kiln_backend
        print("entry point OK")
    """)
    env = dict(os.environ, PYTHONPATH=str(repo_dir / "python"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "entry point OK" in result.stdout, result.stderr


def test_torch_compile_backend_options_reach_kiln():
    import kiln.torch_backend  # noqa: F401  (registers "kiln")

    torch._dynamo.reset()
    model = _model(WithUnsupportedOp)
    compiled = torch.compile(model, backend="kiln", options={"require_full_compilation": True})
    with pytest.raises(Exception, match=r"node 'i0': aten\.i0\."):
        compiled(torch.randn(2, 3, 8, 8))
    torch._dynamo.reset()


# ---- the model tests of issue 2 (tests/python/test_models.py) through kiln.compile -------------

@pytest.mark.parametrize("name", ["resnet_stack", "mlp", "transformer_encoder_layer", "mobilenet_block"])
def test_p1_models_compile_fully_and_match_eager(name):
    # The same architectures, weights and inputs as test_models.py, which checks their ONNX exports;
    # here they go through kiln.compile instead and must become engines with no fallback.
    import test_models

    factory, shape = test_models.MODELS[name]
    model = test_models.seeded(factory(), seed=len(name))
    x = test_models.example_input(shape, seed=1)
    compiled = kiln.compile(model, [x], require_full_compilation=True)
    assert compiled.kiln_report.fallbacks == []
    for seed in (1, 2):  # the second call runs the same engines on other values
        x = test_models.example_input(shape, seed=seed)
        _assert_close(compiled(x), _eager(model, x))


class _MaskFromPositions(nn.Module):
    """What transformers' BERT does to build its attention mask: arange-based arithmetic with no
    tensor inputs, and `.to(dtype)` calls that leave `_assert_tensor_metadata` nodes in the
    exported graph."""

    def forward(self, x, mask):
        positions = torch.arange(x.shape[1]).unsqueeze(0)
        allowed = (positions >= 0) & mask.to(torch.bool)
        bias = (~allowed).to(x.dtype) * -1e4
        return torch.softmax(x + bias.unsqueeze(-1), dim=1)


def test_mask_arithmetic_and_dtype_assertions_compile_fully():
    model = _model(_MaskFromPositions)
    x = torch.randn(2, 8, 4)
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[:, 6:] = 0
    exported = torch.export.export(model, (x, mask)).run_decompositions()
    assert any(n.target is torch.ops.aten._assert_tensor_metadata.default
               for n in exported.graph.nodes), "the case this test covers is gone from export"
    compiled = kiln.compile(model, [x, mask], require_full_compilation=True)
    assert compiled.kiln_report.fallbacks == []
    _assert_close(compiled(x, mask), _eager(model, x, mask))


class _ShiftedWindowMask(nn.Module):
    """Swin's shifted-window attention mask: a constant built with zeros, slice assignments and
    arange-free index arithmetic (slice_scatter chains in the exported graph), added to the
    input. The ONNX exporter's own folding of such chains produced invalid graphs (a Transpose of
    a scalar); kiln.compile computes the constant itself."""

    def forward(self, x):
        mask = torch.zeros(6, 6)
        count = 0
        for rows in (slice(0, -3), slice(-3, -1), slice(-1, None)):
            for cols in (slice(0, -3), slice(-3, -1), slice(-1, None)):
                mask[rows, cols] = count
                count += 1
        windows = mask.view(2, 3, 2, 3).permute(0, 2, 1, 3).reshape(4, 9)
        bias = (windows.unsqueeze(1) - windows.unsqueeze(2)) != 0
        return x + bias.to(x.dtype) * -100.0


def test_constant_computations_become_engine_constants():
    model = _model(_ShiftedWindowMask)
    x = torch.randn(2, 4, 9, 9)
    compiled = kiln.compile(model, [x], require_full_compilation=True)
    report = compiled.kiln_report
    assert report.fallbacks == [] and len(report.engines) == 1
    assert len(report.engines[0].inputs) == 1, report.engines[0].inputs  # the mask is baked in
    _assert_close(compiled(x), _eager(model, x))


def test_swin_transformer_compiles_fully():
    # torchvision has no build for the CI venv's torch; the GPU machine's torch stage runs this.
    torchvision = pytest.importorskip("torchvision")

    model = _model(lambda: torchvision.models.swin_t(weights=None, num_classes=10))
    x = torch.randn(1, 3, 64, 64)
    compiled = kiln.compile(model, [x], require_full_compilation=True)
    assert compiled.kiln_report.fallbacks == []
    _assert_close(compiled(x), _eager(model, x))


class TinyUnet(nn.Module):
    """A downsampling conv, a transposed-conv upsampling (ONNX ConvTranspose) and a skip concat."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(7, 2, 1)

    def forward(self, x):
        y = self.up(torch.relu(self.down(x)))
        return self.head(torch.cat([y, x], dim=1))


def test_transposed_convolution_compiles_fully():
    model = _model(TinyUnet)
    compiled = kiln.compile(model, torch.randn(2, 3, 16, 16), dynamic_batch=(1, 2, 4),
                            require_full_compilation=True)
    report = compiled.kiln_report
    assert report.fallbacks == [] and len(report.engines) == 1, report
    assert report.engines[0].ops["aten.convolution.default"] == 3
    for batch in (1, 3):
        x = torch.randn(batch, 3, 16, 16)
        _assert_close(compiled(x), _eager(model, x))


def test_roberta_compiles_fully():
    """RoBERTa numbers its positions with a cumsum over the padding mask (ONNX CumSum)."""
    # transformers is not in the CI venv; the GPU machine's torch stage runs this.
    transformers = pytest.importorskip("transformers")

    config = transformers.RobertaConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40)
    torch.manual_seed(0)
    roberta = transformers.RobertaModel(config, add_pooling_layer=False).eval()

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.roberta = roberta

        def forward(self, ids, mask):
            return self.roberta(input_ids=ids, attention_mask=mask).last_hidden_state

    model = Encoder().eval()
    ids = torch.randint(3, config.vocab_size, (2, 16))
    ids[1, 11:] = config.pad_token_id
    mask = (ids != config.pad_token_id).to(torch.int64)
    compiled = kiln.compile(model, [ids, mask], require_full_compilation=True)
    report = compiled.kiln_report
    assert report.fallbacks == [] and len(report.engines) == 1, report
    assert "aten.cumsum.default" in report.engines[0].ops, report.engines[0].ops
    _assert_close(compiled(ids, mask), _eager(model, ids, mask), atol=1e-4)


class _UnsupportedOpOnParameters(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        offsets = torch.special.i0(self.weight)
        return torch.relu(x @ self.weight) + offsets.sum()  # i0: no ONNX op


def test_unsupported_op_on_parameters_only_is_folded_at_compile_time():
    # The i0 reads parameters only, so its value is computed once and baked into the
    # engine: nothing falls back, where one of an input would
    # (test_unsupported_op_is_partitioned_around).
    model = _model(_UnsupportedOpOnParameters)
    x = torch.randn(3, 4)
    compiled = kiln.compile(model, [x], require_full_compilation=True)
    assert compiled.kiln_report.fallbacks == [] and len(compiled.kiln_report.engines) == 1
    assert torch.ops.aten.i0.default not in {n.target for n in compiled.graph.nodes}
    _assert_close(compiled(x), _eager(model, x))
