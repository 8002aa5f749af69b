"""Renders the JSON written by bench_models.py as the Markdown table of docs/benchmarks.md.

  python benchmarks/render_benchmarks.py out/gpu-check/benchmarks.json > table.md
"""

from __future__ import annotations

import json
import sys

PEERS = [("eager", "PyTorch eager"), ("eager_cuda_graph", "eager + CUDA graph"),
         ("torch_compile", "torch.compile (reduce-overhead)")]


def main(path: str) -> None:
    report = json.loads(open(path).read())
    print(f"GPU: {report['gpu']}; torch {report['torch']} (CUDA {report['cuda']}, cuDNN {report['cudnn']}); "
          f"kiln {report['kiln']}; Python {report['python']}.")
    print(f"Median of {report['iterations']} timed calls after {report['warmup']} warm-up calls; "
          "latency = host time of one call until the stream is synchronised.\n")
    header = ["model", "batch", "precision"] + [name for _, name in PEERS] + ["kiln", "kiln speed-up vs compile",
                                                                              "kiln vs eager fp16 (rel. err.)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in report["results"]:
        if "error" in row:
            print(f"| {row['model']} | {row['batch']} | {row['precision']} | error: {row['error']} |")
            continue
        cells = [row["model"], str(row["batch"]), row["precision"]]
        cells += [f"{row[key]:.3f} ms" if key in row else "—" for key, _ in PEERS]
        cells.append(f"{row['kiln']:.3f} ms")
        speedup = row.get("kiln_speedup_vs_torch_compile")
        cells.append(f"{speedup:.2f}x" if speedup else "—")
        cells.append(f"{row['kiln_vs_eager_fp16_rel_err']:.1e}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
