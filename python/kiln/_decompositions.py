"""Decompositions kiln.compile adds to torch.export's core-aten table: aten ops with no ONNX form
that kiln builds, rewritten into ops that have one, so they join the engines instead of falling
back to PyTorch.

- ``aten._adaptive_avg_pool2d`` to an output size other than 1x1 (AlexNet's and VGG's 7x7
  pooling before the classifier): an ``avg_pool2d`` when the output size divides the input size
  (the pooling windows then tile the input), else two matmuls with constant averaging matrices
  (row i of the matrix for one axis averages input cells floor(i*L/O) .. ceil((i+1)*L/O)-1, the
  windows adaptive pooling uses). The matrices are computed from ``arange`` and literals only,
  so the partitioner folds them into the engine as constants. Global pooling (1x1) is left as
  it is: it has an ONNX op (GlobalAveragePool).
"""

from __future__ import annotations

import torch

__all__ = ["kiln_decompositions"]

aten = torch.ops.aten


def _static(size) -> int | None:
    return size if isinstance(size, int) else None


def _averaging_matrix(in_size: int, out_size: int, like: torch.Tensor) -> torch.Tensor:
    """(out_size, in_size): row i averages the input cells adaptive pooling's window i covers."""
    rows = torch.arange(out_size, device=like.device).unsqueeze(1)
    cols = torch.arange(in_size, device=like.device).unsqueeze(0)
    start = torch.div(rows * in_size, out_size, rounding_mode="floor")
    end = torch.div((rows + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    window = ((cols >= start) & (cols < end)).to(like.dtype)
    return window / window.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, output_size):
    out_h, out_w = (int(s) for s in output_size)
    in_h, in_w = _static(x.shape[-2]), _static(x.shape[-1])
    if (out_h, out_w) == (1, 1) or in_h is None or in_w is None or not x.is_floating_point():
        return NotImplemented  # global pooling, or sizes only known at run time
    if in_h % out_h == 0 and in_w % out_w == 0:
        kernel = [in_h // out_h, in_w // out_w]
        return aten.avg_pool2d.default(x, kernel, kernel)
    rows = _averaging_matrix(in_h, out_h, x)  # (out_h, in_h)
    cols = _averaging_matrix(in_w, out_w, x)  # (out_w, in_w)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def kiln_decompositions() -> dict:
    """torch.export's default (core aten) decomposition table plus kiln's."""
    table = torch.export.default_decompositions()
    table[aten._adaptive_avg_pool2d.default] = adaptive_avg_pool2d
    return table
