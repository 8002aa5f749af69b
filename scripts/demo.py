"""kiln demo (`make demo`): export the bundled resnet_mini model to ONNX, compile it with the
`kiln build` CLI, run it with the kiln runtime alone (libkiln_runtime.so through ctypes; the
builder library must not be loaded), and check it against ONNX Runtime.

Environment: KILN_BUILD_DIR (default <repo>/build) holds bin/kiln and lib/.
Exit status: 0 when kiln and ONNX Runtime agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO))

RTOL = 1e-4  # max |kiln - ort| / max |ort| must stay below this (fp32 engine)


def loaded_libraries() -> list[str]:
    with open("/proc/self/maps") as maps:
        return sorted({line.split()[-1] for line in maps if line.rstrip().endswith(".so")
                       or ".so." in line.split()[-1]})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(REPO / "out" / "demo"))
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each for the median latency")
    args = parser.parse_args()

    build_dir = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")).resolve()
    kiln_cli = build_dir / "bin" / "kiln"
    os.environ.setdefault("KILN_LIB_DIR", str(build_dir / "lib"))
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "resnet_mini.onnx"
    engine_path = out_dir / "resnet_mini.kiln"

    # 1. Export. torch is imported only here; the runtime part below needs none of it.
    from models import resnet_mini

    resnet_mini.export_onnx(onnx_path)
    x = resnet_mini.sample_input().numpy()
    print(f"exported {onnx_path.relative_to(REPO) if onnx_path.is_relative_to(REPO) else onnx_path}")

    # 2. Compile with the CLI.
    if not kiln_cli.is_file():
        print(f"demo: {kiln_cli} not found; build kiln first (or set KILN_BUILD_DIR)",
              file=sys.stderr)
        return 1
    subprocess.run([str(kiln_cli), "build", str(onnx_path), "-o", str(engine_path)], check=True)

    # 3. Run with the runtime library alone.
    import numpy as np
    import kiln

    engine = kiln.Engine(engine_path)
    outputs = engine.run({"input": x})
    libs = loaded_libraries()
    if any(Path(lib).name == "libkiln.so" for lib in libs):
        print("demo: FAIL: libkiln.so (the builder) was loaded by the runtime path", file=sys.stderr)
        return 1
    runtime_libs = [lib for lib in libs if Path(lib).name.startswith("libkiln")]
    print(f"runtime {kiln.runtime_version()} loaded alone: {', '.join(runtime_libs)}")
    got = outputs["logits"]

    # 4. Reference: ONNX Runtime on the same input. The two are timed in alternating blocks, so
    # that this machine's drift over the run falls on both alike; each block starts with a few
    # untimed runs, as each runtime's threads spin for a while after its calls.
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = session.run(None, {"input": x})[0]
    runners = {"kiln": lambda: engine.run({"input": x}), "onnxruntime": lambda: session.run(None, {"input": x})}
    timed = {name: [] for name in runners}
    block = 20
    for _ in range(max(1, args.runs // block)):
        for name, run in runners.items():
            for _ in range(3):
                run()
            for _ in range(block):
                start = time.perf_counter()
                run()
                timed[name].append((time.perf_counter() - start) * 1e3)
    latencies, ort_latencies = timed["kiln"], timed["onnxruntime"]

    max_abs = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    scale = float(np.max(np.abs(want)))
    max_rel = max_abs / scale if scale > 0 else max_abs
    ok = got.shape == want.shape and bool(np.all(np.isfinite(got))) and max_rel <= RTOL
    print(f"output logits {got.dtype}{list(got.shape)}: kiln argmax {int(np.argmax(got))}, "
          f"onnxruntime argmax {int(np.argmax(want))}")
    print(f"agreement vs onnxruntime: max abs err {max_abs:.3e}, max rel err {max_rel:.3e} "
          f"(tolerance {RTOL:g}): {'PASS' if ok else 'FAIL'}")
    print(f"latency (median of {len(latencies)} runs in alternating blocks, CPU, batch 1): kiln {np.median(latencies):.3f} ms, "
          f"onnxruntime {np.median(ort_latencies):.3f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
