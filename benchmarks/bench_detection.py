"""Latency of torchvision's detection models (issue 12's bar: fasterrcnn_mobilenet_v3_large_fpn,
retinanet_resnet50_fpn, maskrcnn_resnet50_fpn; random weights, eval mode, one fixed image size) in
PyTorch eager, torch.compile, and kiln (kiln.compile in fp16, NMS and RoIAlign as plugins of
libkiln_plugins.so), on one GPU, in one process. The models come from
tests/gpu/test_cuda_detection_models.py, so the benchmark measures what that test checks.

Latency of one call = host time from the call to the end of a stream synchronisation (median of
--iterations calls after --warmup). A model or peer that fails is recorded with its error and the
run goes on; the JSON is rewritten after every row. Needs torchvision and a CUDA GPU.

  python benchmarks/bench_detection.py --out detection.json
  python benchmarks/bench_detection.py --models retinanet_resnet50_fpn --peers eager kiln
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "gpu"))

import kiln  # noqa: E402
from test_cuda_detection_models import MODELS, _image, _make, _plugin_library  # noqa: E402

PEERS = ("eager", "compile", "kiln")


def median_ms(fn, image, warmup: int, iterations: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(image)
        torch.cuda.synchronize()
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            fn(image)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(name: str, peers, warmup: int, iterations: int) -> dict:
    row = {"model": name}
    model, image = _make(name), _image()
    for peer in peers:
        try:
            start = time.perf_counter()
            if peer == "eager":
                fn = model
            elif peer == "compile":
                fn = torch.compile(model)
            else:
                fn = kiln.compile(model, (image,), precision="fp16")
                row["kiln_fallbacks"] = len(fn.kiln_report.fallbacks)
                row["kiln_engines"] = len(fn.kiln_report.engines)
            row[f"{peer}_ms"] = median_ms(fn, image, warmup, iterations)
            row[f"{peer}_setup_s"] = time.perf_counter() - start
        except Exception as error:  # recorded; the run goes on
            row[f"{peer}_error"] = f"{type(error).__name__}: {str(error)[:2000]}"
    for peer in ("eager", "compile"):
        if f"{peer}_ms" in row and "kiln_ms" in row:
            row[f"kiln_speedup_vs_{peer}"] = row[f"{peer}_ms"] / row["kiln_ms"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_detection needs a CUDA GPU", file=sys.stderr)
        return 2
    os.environ.setdefault("KILN_BUILD_DIR", str(REPO / "build"))
    kiln.load_plugin_library(str(_plugin_library()))
    rows = []
    for name in args.models:
        rows.append(measure(name, args.peers, args.warmup, args.iterations))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                            "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
