"""Side-by-side latency of kiln against PyTorch on the same GPU, in one process and one run:
PyTorch eager, eager + CUDA graph, torch.compile(mode="reduce-overhead"), and kiln (engine built
for fp16 from the float32 ONNX export, run on device buffers on torch's current stream).

Latency of one call = host time from the call to the end of a stream synchronisation, so launch
overhead counts. Reported: median over --iterations timed calls after --warmup calls.

  python benchmarks/bench_models.py --models resnet50 bert_base --batches 1 32 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "gpu"))

import kiln  # noqa: E402
from gpu_models import make_inputs, make_model, onnx_path  # noqa: E402

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
               np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32}


def measure(fn, warmup: int, iterations: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def torch_peers(name: str, batch: int, args) -> tuple[dict, torch.Tensor]:
    model = make_model(name).cuda().half()
    inputs = {k: (v.half() if v.is_floating_point() else v) for k, v in make_inputs(name, batch, "cuda").items()}
    values = list(inputs.values())
    results = {}
    with torch.no_grad():
        reference = model(*values)
        results["eager"] = measure(lambda: model(*values), args.warmup, args.iterations)

        static = [v.clone() for v in values]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(*static)
        results["eager_cuda_graph"] = measure(graph.replay, args.warmup, args.iterations)

        if not args.skip_compile:
            compiled = torch.compile(model, mode="reduce-overhead")
            start = time.perf_counter()
            for _ in range(3):
                compiled(*values)
            torch.cuda.synchronize()
            results["torch_compile_s"] = time.perf_counter() - start
            results["torch_compile"] = measure(lambda: compiled(*values), args.warmup, args.iterations)
    return results, reference.float()


def kiln_latency(name: str, batch: int, args) -> tuple[float, float, torch.Tensor]:
    start = time.perf_counter()
    engine = kiln.Engine(kiln.build_onnx(str(onnx_path(name, batch)), target="cuda", precision="fp16"))
    build_s = time.perf_counter() - start
    inputs = make_inputs(name, batch, "cuda")
    bound_in = {k: (v.data_ptr(), tuple(v.shape), np.dtype(str(v.dtype).replace("torch.", "")))
                for k, v in inputs.items()}
    out_binding = engine.outputs[0]
    y = torch.empty(out_binding.shape, dtype=TORCH_DTYPE[np.dtype(out_binding.dtype)], device="cuda")
    bound_out = {out_binding.name: (y.data_ptr(), tuple(y.shape), out_binding.dtype)}
    stream = torch.cuda.current_stream().cuda_stream

    def call():
        engine.run_bound(bound_in, bound_out, stream=stream)

    latency = measure(call, args.warmup, args.iterations)
    return latency, build_s, y.float()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert_base"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--out", default="benchmarks.json")
    args = parser.parse_args()

    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "kiln": kiln.runtime_version(),
        "python": platform.python_version(),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "command": " ".join(sys.argv),
        "results": [],
    }
    for name in args.models:
        for batch in args.batches:
            row = {"model": name, "batch": batch, "precision": "fp16"}
            try:
                peers, reference = torch_peers(name, batch, args)
                row.update(peers)
                row["kiln"], row["kiln_build_s"], out = kiln_latency(name, batch, args)
                scale = float(reference.abs().max())
                row["kiln_vs_eager_fp16_rel_err"] = float((out - reference).abs().max()) / scale
                for peer in ("eager", "eager_cuda_graph", "torch_compile"):
                    if peer in row:
                        row[f"kiln_speedup_vs_{peer}"] = row[peer] / row["kiln"]
            except Exception as error:  # record and go on: one model's failure must not hide others
                row["error"] = f"{type(error).__name__}: {error}"
            print(json.dumps(row), flush=True)
            report["results"].append(row)
            torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))
    main()
