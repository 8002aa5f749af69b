"""The summary of a bench_models.py report: per batch size, the geometric mean of kiln's speed-up
over each peer and the model where kiln does worst; and the rows that failed. Shared by
bench_models.py (printed and stored in the JSON) and render_benchmarks.py (Markdown)."""

from __future__ import annotations

import math

# Peers whose speed-up kiln is summarised against, with their names in tables.
SUMMARY_PEERS = [("torch_compile", "torch.compile"), ("eager_cuda_graph", "eager + CUDA graph")]


def summarize(results: list[dict]) -> dict:
    """{"per_batch": {batch: {peer: {"models", "geomean_speedup", "worst": {"model", "speedup"}}}},
    "failed": ["model batch N: error", "model batch N, peer: error", ...]}; batches and peers without
    a measured pair are left out."""
    per_batch: dict[str, dict] = {}
    for batch in sorted({row["batch"] for row in results}):
        rows = [row for row in results if row["batch"] == batch and "error" not in row]
        entry = {}
        for peer, _ in SUMMARY_PEERS:
            speedups = [(row["model"], row[f"kiln_speedup_vs_{peer}"]) for row in rows
                        if row.get(f"kiln_speedup_vs_{peer}")]
            if not speedups:
                continue
            worst = min(speedups, key=lambda item: item[1])
            entry[peer] = {
                "models": len(speedups),
                "geomean_speedup": math.exp(sum(math.log(s) for _, s in speedups) / len(speedups)),
                "worst": {"model": worst[0], "speedup": worst[1]},
            }
        if entry:
            per_batch[str(batch)] = entry
    failed = []
    for row in results:
        where = f"{row['model']} batch {row['batch']}"
        if "error" in row:
            failed.append(f"{where}: {row['error']}")
        failed += [f"{where}, {key[:-len('_error')]}: {row[key]}" for key in sorted(row)
                   if key.endswith("_error") and key != "error"]
    return {"per_batch": per_batch, "failed": failed}


def summary_lines(summary: dict) -> list[str]:
    """The summary as sentences, one per batch size and peer, then one per failed row."""
    lines = []
    for batch, entry in summary["per_batch"].items():
        for peer, label in SUMMARY_PEERS:
            if peer not in entry:
                continue
            stats = entry[peer]
            lines.append(f"batch {batch}: kiln vs {label}: geometric mean {stats['geomean_speedup']:.2f}x over "
                         f"{stats['models']} models; worst {stats['worst']['model']} "
                         f"({stats['worst']['speedup']:.2f}x)")
    lines += [f"failed: {failure}" for failure in summary["failed"]]
    return lines
