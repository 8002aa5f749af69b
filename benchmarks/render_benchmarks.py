"""Renders the JSON written by bench_models.py as the Markdown of docs/benchmarks.md: the
environment, the table (one row per model and batch size) and the summary (per batch size, the
geometric mean of kiln's speed-up and the model where it is lowest; the rows that failed).

  python benchmarks/render_benchmarks.py out/gpu-check/benchmarks.json > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_summary import summarize, summary_lines  # noqa: E402

PEERS = [("eager", "PyTorch eager"), ("eager_cuda_graph", "eager + CUDA graph"),
         ("torch_compile", "torch.compile (reduce-overhead)")]
HEADER = (["model", "batch", "precision"] + [label for _, label in PEERS]
          + ["kiln", "kiln speed-up vs compile", "kiln speed-up vs CUDA graph", "kiln build", "compile time",
             "kiln vs eager fp16 (rel. err.)"])


def cell(row: dict, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if row.get(key) is not None else "—"


def table_row(row: dict) -> str:
    cells = [row["model"], str(row["batch"]), row["precision"]]
    if "error" in row:
        cells.append(f"error: {row['error']}".replace("|", "\\|").replace("\n", " "))
        return "| " + " | ".join(cells) + " |"
    cells += ["failed" if f"{key}_error" in row else cell(row, key, "{:.3f} ms") for key, _ in PEERS]
    cells += [cell(row, "kiln", "{:.3f} ms"),
              cell(row, "kiln_speedup_vs_torch_compile", "{:.2f}x"),
              cell(row, "kiln_speedup_vs_eager_cuda_graph", "{:.2f}x"),
              cell(row, "kiln_build_s", "{:.1f} s"),
              cell(row, "torch_compile_s", "{:.1f} s"),
              cell(row, "kiln_vs_eager_fp16_rel_err", "{:.1e}")]
    return "| " + " | ".join(cells) + " |"


def render(report: dict) -> str:
    lines = [f"GPU: {report['gpu']}; torch {report['torch']} (CUDA {report['cuda']}, cuDNN {report['cudnn']}); "
             f"kiln {report['kiln']}; Python {report['python']}.",
             f"Median of {report['iterations']} timed calls after {report['warmup']} warm-up calls; "
             "latency = host time of one call until the stream is synchronised. kiln build = engine "
             "build seconds (export excluded); compile time = torch.compile's first three calls.",
             "",
             "| " + " | ".join(HEADER) + " |",
             "|" + "---|" * len(HEADER)]
    lines += [table_row(row) for row in report["results"]]
    # Recomputed rather than read, so reports written before the summary existed render too.
    summary = summarize(report["results"])
    if summary["per_batch"] or summary["failed"]:
        lines += ["", "Summary:", ""] + [f"- {line}" for line in summary_lines(summary)]
    return "\n".join(lines)


def main(path: str) -> None:
    print(render(json.loads(Path(path).read_text())))


if __name__ == "__main__":
    main(sys.argv[1])
