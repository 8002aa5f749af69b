"""Small real architectures, exported from PyTorch with torch.onnx.export (the dynamo-based
exporter, opset 18; it folds eval-mode BatchNorm into the convolutions), compiled with kiln
(fp32, cpu) and compared with ONNX Runtime and with PyTorch itself.

Tolerance: max |kiln - ref| / max |ref| <= 1e-4 for both references (fp32 throughout; the
differences come from summation order in convolutions, GEMMs and reductions).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import kiln
from kiln_testing import relative_error, run_ort

REL_TOL = 1e-4
OPSET = 18


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.GELU(), nn.Linear(64, 64), nn.Tanh(),
                                 nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


class MobileNetBlock(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, HardSwish, residual."""

    def __init__(self, c: int = 16, expand: int = 4):
        super().__init__()
        hidden = c * expand
        self.expand = nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                                    nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
                                       nn.BatchNorm2d(hidden), nn.Hardswish())
        self.project = nn.Sequential(nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 7))

    def forward(self, x):
        return self.head(x + self.project(self.depthwise(self.expand(x))))


def seeded(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p[0].numel()) ** 0.5))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so BN is not an identity
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    return model.eval()


def make_transformer() -> nn.Module:
    return nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0,
                                      batch_first=True)


MODELS = {
    "resnet_stack": (lambda: ResNetStack(), (2, 3, 16, 16)),
    "mlp": (lambda: MLP(), (4, 20)),
    "transformer_encoder_layer": (make_transformer, (2, 7, 32)),
    "mobilenet_block": (lambda: MobileNetBlock(), (1, 16, 9, 9)),
}


def export(model: nn.Module, example: torch.Tensor, path, dynamic_batch: bool = False) -> onnx.ModelProto:
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=32)},)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["y"],
                          opset_version=OPSET, dynamo=True, **kwargs)
    return onnx.load(str(path))


def example_input(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def check_against_references(engine: kiln.Engine, onnx_model: onnx.ModelProto, model: nn.Module,
                             x: torch.Tensor) -> None:
    input_name, output_name = engine.inputs[0].name, engine.outputs[0].name
    got = engine.run({input_name: x.numpy()})[output_name]
    want_ort = run_ort(onnx_model, {input_name: x.numpy()})[output_name]
    with torch.no_grad():
        want_torch = model(x).numpy()
    assert got.shape == want_torch.shape, (got.shape, want_torch.shape)
    assert np.all(np.isfinite(got))
    err_ort = relative_error(got, want_ort)
    err_torch = relative_error(got, want_torch)
    assert err_ort <= REL_TOL, f"kiln vs onnxruntime: max rel err {err_ort:.3e} > {REL_TOL}"
    assert err_torch <= REL_TOL, f"kiln vs pytorch: max rel err {err_torch:.3e} > {REL_TOL}"


@pytest.mark.parametrize("name", list(MODELS))
def test_model_matches_onnxruntime_and_pytorch(name, tmp_path):
    factory, shape = MODELS[name]
    model = seeded(factory(), seed=len(name))
    x = example_input(shape, seed=1)
    onnx_model = export(model, x, tmp_path / f"{name}.onnx")
    engine = kiln.Engine(kiln.build_onnx(str(tmp_path / f"{name}.onnx")))
    assert [b.name for b in engine.inputs] == ["x"]
    assert engine.inputs[0].shape == tuple(shape)
    check_against_references(engine, onnx_model, model, x)
    # A second run on the same context with other values must not reuse stale results.
    check_against_references(engine, onnx_model, model, example_input(shape, seed=2))


@pytest.mark.parametrize("name", ["resnet_stack", "mlp", "transformer_encoder_layer"])
def test_dynamic_batch_at_two_sizes(name, tmp_path):
    factory, shape = MODELS[name]
    model = seeded(factory(), seed=len(name))
    onnx_model = export(model, example_input(shape, seed=1), tmp_path / f"{name}.onnx",
                        dynamic_batch=True)
    input_dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    assert input_dims[0].dim_param, "the exporter should have made the batch dim symbolic"
    engine_bytes = kiln.build_onnx(onnx_model.SerializeToString(),
                                   profiles={"x": {"min": (1, *shape[1:]), "opt": (2, *shape[1:]),
                                                   "max": (8, *shape[1:])}})
    engine = kiln.Engine(engine_bytes)
    assert engine.inputs[0].shape[0] == -1
    for batch in (1, 5):
        check_against_references(engine, onnx_model, model, example_input((batch, *shape[1:]), seed=batch))


def test_bundled_demo_model(tmp_path, repo_dir):
    import sys

    sys.path.insert(0, str(repo_dir))
    from models import resnet_mini

    path = resnet_mini.export_onnx(tmp_path / "resnet_mini.onnx")
    engine = kiln.Engine(kiln.build_onnx(path))
    check_against_references(engine, onnx.load(path), resnet_mini.build_model(),
                             resnet_mini.sample_input())
