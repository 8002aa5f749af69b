"""The benchmark report's summary and Markdown (benchmarks/bench_summary.py, render_benchmarks.py):
they need no GPU, so they are checked here on a made-up report."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_summary import summarize, summary_lines  # noqa: E402
from render_benchmarks import render  # noqa: E402


def row(model: str, batch: int, compile_ms: float | None, kiln_ms: float, graph_ms: float | None = None) -> dict:
    out = {"model": model, "batch": batch, "precision": "fp16", "kiln": kiln_ms, "kiln_build_s": 4.0,
           "kiln_vs_eager_fp16_rel_err": 1e-3}
    if compile_ms is not None:
        out.update(torch_compile=compile_ms, torch_compile_s=30.0, kiln_speedup_vs_torch_compile=compile_ms / kiln_ms)
    if graph_ms is not None:
        out.update(eager_cuda_graph=graph_ms, kiln_speedup_vs_eager_cuda_graph=graph_ms / kiln_ms)
    return out


RESULTS = [
    row("resnet50", 1, 0.8, 0.4, graph_ms=1.0),   # 2x
    row("swin_t", 1, 1.0, 2.0),                    # 0.5x: the worst at batch 1
    {**row("gpt2", 1, None, 1.0),                  # compile not timed: not in the mean
     "eager_cuda_graph_error": "RuntimeError: capture failed"},
    row("resnet50", 32, 2.5, 1.25),                # 2x
    {"model": "swin_t", "batch": 32, "precision": "fp16", "error": "RuntimeError: no kernel | for Foo"},
]


def test_summary_is_the_geometric_mean_and_the_worst_model_per_batch():
    summary = summarize(RESULTS)
    batch1 = summary["per_batch"]["1"]["torch_compile"]
    assert batch1["models"] == 2
    assert batch1["geomean_speedup"] == pytest.approx(math.sqrt(2.0 * 0.5))
    assert batch1["worst"] == {"model": "swin_t", "speedup": pytest.approx(0.5)}
    assert summary["per_batch"]["1"]["eager_cuda_graph"]["models"] == 1
    assert summary["per_batch"]["32"]["torch_compile"]["geomean_speedup"] == pytest.approx(2.0)
    assert "eager_cuda_graph" not in summary["per_batch"]["32"]
    assert summary["failed"] == ["gpt2 batch 1, eager_cuda_graph: RuntimeError: capture failed",
                                 "swin_t batch 32: RuntimeError: no kernel | for Foo"]
    lines = summary_lines(summary)
    assert "batch 1: kiln vs torch.compile: geometric mean 1.00x over 2 models; worst swin_t (0.50x)" in lines


def test_render_has_a_row_per_result_and_the_summary():
    report = {"gpu": "H100", "torch": "2.11", "cuda": "13.0", "cudnn": 91900, "kiln": "0.1.0", "python": "3.12",
              "iterations": 200, "warmup": 30, "results": RESULTS}
    text = render(report)
    table = [line for line in text.splitlines() if line.startswith("| ") and "model" not in line]
    assert len(table) == len(RESULTS)
    assert "| resnet50 | 1 | fp16 | — | 1.000 ms | 0.800 ms | 0.400 ms | 2.00x | 2.50x | 4.0 s | 30.0 s | 1.0e-03 |" \
        in table
    assert any("gpt2 | 1 | fp16 | — | failed | — | 1.000 ms | — |" in line for line in table)  # a failed peer
    assert "error: RuntimeError: no kernel \\| for Foo" in text  # a | in an error must not split the row
    assert "- batch 32: kiln vs torch.compile: geometric mean 2.00x over 1 models; worst resnet50 (2.00x)" in text
    assert "- failed: swin_t batch 32" in text
