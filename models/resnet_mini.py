"""resnet_mini: kiln's bundled demo model.

A small ResNet-style CNN for 3x32x32 images: a conv stem, three stages of basic residual blocks
(3x3 conv, BatchNorm, ReLU, identity or 1x1-projection shortcut), global average pooling and a
linear classifier. Weights are random but seeded (and BatchNorm statistics are randomised too,
so that BN is not an identity), so every export produces the same model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import torch
from torch import nn

SEED = 20240601
INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetMini(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks = []
        channels = widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(channels, width, 1 if i == 0 else 2))
            blocks.append(BasicBlock(width, width, 1))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model(seed: int = SEED) -> ResNetMini:
    """The demo model in eval mode, with seeded weights and BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ResNetMini()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=generator))
                module.bias.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
    return model.eval()


def sample_input(seed: int = SEED, batch: int = INPUT_SHAPE[0]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randn((batch, *INPUT_SHAPE[1:]), generator=generator)


def export_onnx(path: str | os.PathLike, *, dynamic_batch: bool = False, opset: int = 18) -> str:
    """Exports the demo model to ONNX at `path` (input "input", output "logits") with
    torch.onnx.export's default (dynamo-based) exporter. Returns the path."""
    model = build_model()
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=64)},)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # The exporter logs progress and notes about optional torchvision ops; keep the demo quiet.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample_input(),), str(path), input_names=["input"],
                          output_names=["logits"], opset_version=opset, dynamo=True,
                          verbose=False, **kwargs)
    return str(path)


if __name__ == "__main__":
    import sys

    print(export_onnx(sys.argv[1] if len(sys.argv) > 1 else "out/demo/resnet_mini.onnx"))
