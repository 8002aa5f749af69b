"""kiln's CPU convolutions side by side with ONNX Runtime: ResNet-18 and MobileNetV2 (full size,
224x224, from tests/python/cpu_conv_models.py) at batch 1, for each thread count, p50 latency of
kiln with KILN_CPU_CONV=reference, kiln with KILN_CPU_CONV=onednn, and onnxruntime. Each (runner,
threads) pair runs in its own process; kiln's thread count is its context's (kiln.Engine(threads=),
which sets oneDNN's OpenMP count per call and keeps OpenBLAS at one thread), onnxruntime's its
intra_op_num_threads.

  python benchmarks/bench_cpu_conv.py --threads 1 2 --iterations 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(runner: str, onnx_path: str, engine_path: str, threads: int, iterations: int) -> float:
    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    if runner == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        run = lambda: session.run(None, {"x": x})  # noqa: E731
    else:
        import kiln

        engine = kiln.Engine(Path(engine_path).read_bytes(), threads=threads)  # the context's intra-op threads
        run = lambda: engine.run({"x": x})  # noqa: E731
    for _ in range(5):
        run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--child", nargs=4, metavar=("RUNNER", "ONNX", "ENGINE", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runner, onnx_path, engine_path, threads = args.child
        print(measure(runner, onnx_path, engine_path, int(threads), args.iterations))
        return

    import torch

    sys.path.insert(0, str(REPO / "tests" / "python"))
    import kiln
    from cpu_conv_models import MobileNetV2, ResNet18, export, seeded

    factories = {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            onnx_path = Path(tmp) / f"{name}.onnx"
            export(seeded(factories[name](), seed=0), torch.randn(1, 3, 224, 224), onnx_path)
            engine_path = Path(tmp) / f"{name}.kiln"
            engine_path.write_bytes(kiln.build_onnx(str(onnx_path)))
            for threads in args.threads:
                row = {"model": name, "batch": 1, "threads": threads}
                for runner, conv in (("kiln", "reference"), ("kiln", "onednn"), ("onnxruntime", None)):
                    env = dict(os.environ)
                    if conv:
                        env["KILN_CPU_CONV"] = conv
                    out = subprocess.run([sys.executable, __file__, "--iterations", str(args.iterations), "--child",
                                          runner, str(onnx_path), str(engine_path), str(threads)],
                                         env=env, capture_output=True, text=True, check=True).stdout
                    row[f"{runner}_{conv}_ms" if conv else f"{runner}_ms"] = round(float(out.strip()), 2)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
