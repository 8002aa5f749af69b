"""Side-by-side latency of kiln against PyTorch on the same GPU, in one process and one run, on
the model zoo of tests/gpu/gpu_models.py: PyTorch eager, eager + CUDA graph,
torch.compile(mode="reduce-overhead"), and kiln (engine built for fp16 from the float32 ONNX
export, run on device buffers on torch's current stream).

Latency of one call = host time from the call to the end of a stream synchronisation, so launch
overhead counts. Reported per row: median over --iterations timed calls after --warmup calls for
each peer and kiln, kiln's build seconds, torch.compile's compile seconds, kiln's speed-ups and
its relative error against eager fp16; at the end, per batch size, the geometric mean of kiln's
speed-up over torch.compile and the model where it is lowest (bench_summary.py).

Made to run in parts on a machine with little time: --models, --batches and --peers select; a
model's failure, or its running past --model-budget-s, is recorded and the run goes on; the JSON
is rewritten after every row, so a run killed at a time limit keeps what it measured; --merge
keeps the rows of an earlier run's --out that this run does not measure again. Each model is
exported once with a dynamic batch and built per batch size from that export (gpu_models).

  python benchmarks/bench_models.py --models resnet50 bert_base --batches 1 32 --out results.json
  python benchmarks/bench_models.py --models swin_t gpt2 --peers compile --merge --out results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "gpu"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kiln  # noqa: E402
from bench_summary import summarize, summary_lines  # noqa: E402
from gpu_models import MODELS, build_engine, make_inputs, make_model  # noqa: E402

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
               np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32}
# --peers names -> the row keys of their medians
PEERS = {"eager": "eager", "cuda_graph": "eager_cuda_graph", "compile": "torch_compile"}


class ModelBudgetExceeded(Exception):
    pass


@contextmanager
def budget(seconds: float):
    """Raises ModelBudgetExceeded in this (the main) thread once `seconds` have passed. Python code
    is interrupted where it runs; a long call into C (a kiln build) is interrupted when it returns."""
    if seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise ModelBudgetExceeded(f"the model's budget of {seconds:.0f} s ran out")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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


def torch_peers(model: torch.nn.Module, name: str, batch: int, peers: set[str], args) -> tuple[dict, torch.Tensor]:
    """The selected peers' medians (and torch.compile's compile seconds) for the fp16 `model`, and
    eager's output (the reference of kiln's error), which is computed whatever the selection. A
    peer that fails is recorded as "<peer>_error" and the others (and kiln) still run."""
    inputs = {k: (v.half() if v.is_floating_point() else v) for k, v in make_inputs(name, batch, "cuda").items()}
    values = list(inputs.values())
    results = {}

    def cuda_graph() -> float:
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
        return measure(graph.replay, args.warmup, args.iterations)

    def compile_() -> float:
        # A fresh Dynamo state and static shapes: otherwise the second batch size recompiles the
        # same code object with a dynamic batch, which is not what a user of one size gets.
        torch._dynamo.reset()
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
        start = time.perf_counter()
        for _ in range(3):
            compiled(*values)
        torch.cuda.synchronize()
        results["torch_compile_s"] = time.perf_counter() - start
        return measure(lambda: compiled(*values), args.warmup, args.iterations)

    timed = {"eager": lambda: measure(lambda: model(*values), args.warmup, args.iterations),
             "cuda_graph": cuda_graph, "compile": compile_}
    with torch.no_grad():
        reference = model(*values)
        for peer, fn in timed.items():
            if peer not in peers:
                continue
            try:
                results[PEERS[peer]] = fn()
            except ModelBudgetExceeded:
                raise
            except Exception as error:  # this peer only: kiln's number is still worth having
                results[f"{PEERS[peer]}_error"] = f"{type(error).__name__}: {error}"
                try:
                    torch.cuda.synchronize()
                except Exception:  # a broken context shows in the next step's error
                    pass
    return results, reference.float()


def kiln_run(name: str, batch: int, args) -> tuple[dict, torch.Tensor]:
    """kiln's median and how its engine was made (export kind and seconds, build seconds), and its output."""
    engine_bytes, made = build_engine(name, batch, target="cuda", precision="fp16")
    results = {"kiln_build_s": made["build_s"], "onnx_export": made["export"]}
    if made["export_s"] >= 0.5:  # this row paid for the export (later rows of the model reuse it)
        results["onnx_export_s"] = made["export_s"]
    engine = kiln.Engine(engine_bytes)
    try:
        inputs = make_inputs(name, batch, "cuda")
        bound_in = {k: (v.data_ptr(), tuple(v.shape), np.dtype(str(v.dtype).replace("torch.", "")))
                    for k, v in inputs.items()}
        out_binding = engine.outputs[0]
        y = torch.empty(out_binding.shape, dtype=TORCH_DTYPE[np.dtype(out_binding.dtype)], device="cuda")
        bound_out = {out_binding.name: (y.data_ptr(), tuple(y.shape), out_binding.dtype)}
        stream = torch.cuda.current_stream().cuda_stream

        def call():
            engine.run_bound(bound_in, bound_out, stream=stream)

        results["kiln"] = measure(call, args.warmup, args.iterations)
        torch.cuda.synchronize()
        return results, y.float()
    finally:
        engine.close()


def run_model(name: str, batches: list[int], peers: set[str], args, emit) -> None:
    """Measures every batch size of one model, emitting one row each, within the model's budget."""
    rows = [{"model": name, "batch": batch, "precision": "fp16"} for batch in batches]
    done = 0
    model = None
    try:
        with budget(args.model_budget_s):
            model = make_model(name).cuda().half()
            for row in rows:
                batch = row["batch"]
                try:
                    measured, reference = torch_peers(model, name, batch, peers, args)
                    row.update(measured)
                    measured, out = kiln_run(name, batch, args)
                    row.update(measured)
                    scale = float(reference.abs().max())
                    row["kiln_vs_eager_fp16_rel_err"] = float((out - reference).abs().max()) / scale
                    for peer in PEERS.values():
                        if peer in row:
                            row[f"kiln_speedup_vs_{peer}"] = row[peer] / row["kiln"]
                except ModelBudgetExceeded:
                    raise
                except Exception as error:  # record and go on: one row's failure must not hide others
                    row["error"] = f"{type(error).__name__}: {error}"
                emit(row)
                done += 1
                torch.cuda.empty_cache()
    except Exception as error:  # the budget ran out, or the model could not be made
        for row in rows[done:]:
            row["error"] = f"{type(error).__name__}: {error}" if row is rows[done] else \
                f"not run: {type(error).__name__} earlier in this model: {error}"
            emit(row)
    finally:
        del model
        torch._dynamo.reset()
        gc.collect()
        try:
            torch.cuda.synchronize()
        except Exception:  # a broken context shows in the next model's row
            pass
        torch.cuda.empty_cache()


def load_merged(path: Path, report: dict, measured: set[tuple[str, int]]) -> list[dict]:
    """The rows of an earlier report at `path` that this run does not measure again; refuses a
    report from another GPU or torch, whose numbers must not share a table with these."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    for key in ("gpu", "torch", "kiln"):
        if earlier.get(key) != report[key]:
            sys.exit(f"--merge: {path} has {key} {earlier.get(key)!r}, this run {report[key]!r}; "
                     "use another --out")
    return [row for row in earlier.get("results", []) if (row["model"], row["batch"]) not in measured]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, help=f"default: the zoo ({' '.join(MODELS)})")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated PyTorch peers to time, of {','.join(PEERS)} (kiln always runs)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--skip-compile", action="store_true", help="the same as leaving compile out of --peers")
    parser.add_argument("--model-budget-s", type=float, default=360.0,
                        help="seconds one model (all its batch sizes) may take; 0: no limit")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of an existing --out file that this run does not measure")
    parser.add_argument("--out", default="benchmarks.json")
    args = parser.parse_args()
    peers = {p for p in args.peers.split(",") if p}
    unknown = peers - set(PEERS)
    if unknown:
        parser.error(f"--peers: unknown {sorted(unknown)}; choose from {','.join(PEERS)}")
    if args.skip_compile:
        peers.discard("compile")

    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "kiln": kiln.runtime_version(),
        "python": platform.python_version(),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "peers": sorted(peers),
        "command": " ".join(sys.argv),
        "results": [],
    }
    out = Path(args.out)
    measured = {(name, batch) for name in args.models for batch in args.batches}
    kept = load_merged(out, report, measured) if args.merge else []

    def write() -> None:
        # In the zoo's order, whichever run measured a row.
        report["results"] = sorted(kept + new_rows, key=lambda row: (
            MODELS.index(row["model"]) if row["model"] in MODELS else len(MODELS), row["model"], row["batch"]))
        report["summary"] = summarize(report["results"])
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps(report, indent=2))
        partial.replace(out)  # never a half-written file, whenever the run is killed

    new_rows: list[dict] = []

    def emit(row: dict) -> None:
        print(json.dumps(row), flush=True)
        new_rows.append(row)
        write()

    write()
    for name in args.models:
        run_model(name, args.batches, peers, args, emit)
    for line in summary_lines(report["summary"]):
        print(line, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))
    main()
