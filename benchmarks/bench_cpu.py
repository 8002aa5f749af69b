"""kiln's CPU engines side by side with ONNX Runtime (issue 14's bar): ResNet-18, ResNet-50,
MobileNetV2, EfficientNet-B0 (torchvision, 224x224) and BERT-base (transformers, 128 tokens) with
random weights, at each batch size and thread count, p50 latency of one call. Each (runner, model,
batch, threads) runs in its own process; kiln's threads are its context's (kiln.Engine(threads=)),
ONNX Runtime's its intra_op_num_threads (inter_op 1). With --rounds N the two runners' processes
alternate N times per configuration and each reports the median of its N medians, so that a
machine shared with other work loads both alike.

Two steps, as torchvision and transformers need not be importable beside kiln's own torch:

  python benchmarks/bench_cpu.py --export DIR          # with torchvision + transformers installed
  python benchmarks/bench_cpu.py --onnx-dir DIR --batches 1 8 --threads 1 2 --out cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "bert_base")
SEQUENCE = 128


def export_models(directory: Path) -> None:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name in MODELS:
        path = directory / f"{name}.onnx"
        if path.exists():
            continue
        if name == "bert_base":
            from transformers import BertConfig, BertModel

            model = BertModel(BertConfig()).eval()
            inputs = (torch.zeros(1, SEQUENCE, dtype=torch.int64), torch.ones(1, SEQUENCE, dtype=torch.int64))
            names = ["input_ids", "attention_mask"]
        else:
            import torchvision

            model = getattr(torchvision.models, name)(weights=None).eval()
            inputs = (torch.randn(1, 3, 224, 224),)
            names = ["x"]
        batch = torch.export.Dim("batch", min=1, max=64)
        with torch.no_grad():
            torch.onnx.export(model, inputs, str(path), input_names=names, output_names=["y"], dynamo=True,
                              external_data=False, dynamic_shapes=tuple({0: batch} for _ in inputs))
        print(f"exported {path}", flush=True)


def feeds(name: str, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    if name == "bert_base":
        mask = np.ones((batch, SEQUENCE), dtype=np.int64)
        mask[:, SEQUENCE - 16:] = 0
        return {"input_ids": rng.integers(0, 30522, (batch, SEQUENCE), dtype=np.int64), "attention_mask": mask}
    return {"x": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}


def measure(runner: str, onnx_path: Path, name: str, batch: int, threads: int, iterations: int) -> float:
    import numpy as np

    x = feeds(name, batch)
    if runner == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        run = lambda: session.run(None, x)  # noqa: E731
    else:
        import kiln

        profiles = {key: (value.shape, value.shape) for key, value in x.items()}  # a static engine
        engine = kiln.Engine(kiln.build_onnx(str(onnx_path), profiles=profiles), threads=threads)
        run = lambda: engine.run(x)  # noqa: E731
    for _ in range(3):
        run()
    times = []
    deadline = time.perf_counter() + 60
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() > deadline and len(times) >= 5:
            break
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, help="write the models' ONNX files into this folder and stop")
    parser.add_argument("--onnx-dir", type=Path)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the runners' processes this many times")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        export_models(args.export)
        return
    if args.child:
        runner, path, name, batch, threads = args.child
        print(measure(runner, Path(path), name, int(batch), int(threads), args.iterations))
        return
    if args.onnx_dir is None:
        parser.error("--onnx-dir (or --export) is required")
    rows = []
    for name in args.models:
        path = args.onnx_dir / f"{name}.onnx"
        for batch in args.batches:
            for threads in args.threads:
                row = {"model": name, "batch": batch, "threads": threads}
                medians: dict[str, list[float]] = {"kiln": [], "onnxruntime": []}
                for _ in range(max(args.rounds, 1)):
                    for runner in medians:
                        if f"{runner}_error" in row:
                            continue
                        out = subprocess.run([sys.executable, __file__, "--iterations", str(args.iterations),
                                              "--child", runner, str(path), name, str(batch), str(threads)],
                                             capture_output=True, text=True)
                        if out.returncode != 0:
                            row[f"{runner}_error"] = out.stderr.strip().splitlines()[-1:]
                            continue
                        medians[runner].append(float(out.stdout.strip().splitlines()[-1]))
                for runner, values in medians.items():
                    if values:
                        row[f"{runner}_ms"] = round(statistics.median(values), 2)
                if "kiln_ms" in row and "onnxruntime_ms" in row:
                    row["kiln_speedup_vs_onnxruntime"] = round(row["onnxruntime_ms"] / row["kiln_ms"], 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
