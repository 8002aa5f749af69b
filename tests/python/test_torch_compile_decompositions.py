"""kiln.compile's own decompositions (kiln._decompositions): aten ops without an ONNX form kiln
builds, rewritten so the model compiles into engines with no fallback. Small models, CPU engines.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import kiln
from kiln._decompositions import adaptive_avg_pool2d


class PoolHead(nn.Module):
    """A conv, then adaptive average pooling to a fixed grid and a linear classifier over it
    (torchvision's AlexNet/VGG head)."""

    def __init__(self, grid):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Linear(4 * grid[0] * grid[1], 5)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


@pytest.mark.parametrize("size,grid,pool_op", [
    ((8, 12), (4, 3), "aten.avg_pool2d.default"),  # divides: an average pool
    ((7, 5), (3, 2), "aten.bmm.default"),  # overlapping windows: averaging matrices
    ((1, 2), (6, 6), "aten.bmm.default"),  # smaller than the grid (AlexNet at 64x64)
])
def test_adaptive_avg_pool_compiles_without_fallback(size, grid, pool_op):
    torch.manual_seed(0)
    model = PoolHead(grid).eval()
    x = torch.randn(2, 3, *size)
    compiled = kiln.compile(model, x, dynamic_batch=(1, 2, 4))
    report = compiled.kiln_report
    assert report.fully_compiled and len(report.engines) == 1, report
    ops = report.engines[0].ops
    assert "aten._adaptive_avg_pool2d.default" not in ops and pool_op in ops, ops
    for batch in (2, 3):
        x = torch.randn(batch, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), atol=2e-5, rtol=1e-5)


def test_global_adaptive_pool_is_left_to_its_onnx_op():
    x = torch.randn(2, 3, 5, 5)
    assert adaptive_avg_pool2d(x, [1, 1]) is NotImplemented


@pytest.mark.parametrize("size,grid", [((7, 5), (3, 2)), ((9, 4), (4, 7)), ((6, 6), (3, 2))])
def test_adaptive_avg_pool_decomposition_matches_aten(size, grid):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    want = torch.ops.aten._adaptive_avg_pool2d.default(x, list(grid))
    torch.testing.assert_close(adaptive_avg_pool2d(x, list(grid)), want)
