"""The torch side of the example: a torch.library custom op and a small model that calls it.

``mylib::scaled_gelu(Tensor x, float alpha) -> Tensor`` is ``alpha * gelu(x)`` (exact GELU). Its CPU
implementation is what eager PyTorch runs; its fake (abstract) implementation gives torch.export the
output's shape and dtype. kiln.compile maps it to the plugin of the same namespace and name,
``mylib::scaled_gelu`` (scaled_gelu_plugin.cpp), with the field ``alpha`` from the op's argument of
that name.
"""

from __future__ import annotations

import torch


@torch.library.custom_op("mylib::scaled_gelu", mutates_args=())
def scaled_gelu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return alpha * torch.nn.functional.gelu(x)


@scaled_gelu.register_fake
def _(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.empty_like(x)


class SmallModel(torch.nn.Module):
    """Linear -> scaled_gelu(alpha=1.5) -> Linear."""

    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 4):
        super().__init__()
        self.up = torch.nn.Linear(features, hidden)
        self.down = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(scaled_gelu(self.up(x), 1.5))


def example_inputs() -> tuple[torch.Tensor]:
    return (torch.randn(8, 16, generator=torch.Generator().manual_seed(0)),)
