"""CPU pre-flight of the benchmark zoo, for a machine without a GPU: for each model of
tests/gpu/gpu_models.py it constructs the model and runs it once, exports it with a dynamic batch
(and, with --compare-static, with a static one), builds CPU engines from the export pinned to
batch 1 and 2 by input profiles, runs them against PyTorch float32, and checks that the pinned
dynamic export gives the same layers as the static export. One JSON line per model; a failing
step is recorded and the next model goes on. (CPU engines skip the CUDA lowering passes, so a
layer difference here, e.g. ViT-B/16's extra Reshapes of the dynamic export, need not survive
into a CUDA engine.)

  KILN_GPU_CACHE=/tmp/zoo python benchmarks/zoo_cpu_check.py --models resnet50 gpt2 --compare-static
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tests" / "gpu"))

import kiln  # noqa: E402
from gpu_models import MODELS, dynamic_onnx_path, input_profiles, make_inputs, make_model, onnx_path  # noqa: E402

KILN_CLI = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"


def layer_ops(engine: bytes) -> collections.Counter:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine.kiln"
        path.write_bytes(engine)
        out = subprocess.run([str(KILN_CLI), "inspect", "--json", str(path)], check=True,
                             capture_output=True, text=True).stdout
    return collections.Counter(layer["op"] for layer in json.loads(out)["layers"])


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want))) / float(np.max(np.abs(want)))


def step(row: dict, name: str, fn):
    """Runs fn(), recording its seconds as row[name + "_s"] and any failure as row[name + "_error"]."""
    start = time.perf_counter()
    try:
        return fn()
    except Exception as error:  # record and go on to the next step or model
        row[f"{name}_error"] = f"{type(error).__name__}: {str(error)[:800]}"
        if os.environ.get("ZOO_CHECK_TRACEBACK"):
            traceback.print_exc()
        return None
    finally:
        row[f"{name}_s"] = round(time.perf_counter() - start, 1)


def check(name: str, batches: list[int], compare_static: bool) -> dict:
    row: dict = {"model": name}
    references = {}

    def forward():
        model = make_model(name)
        with torch.no_grad():
            for batch in batches:
                references[batch] = model(*make_inputs(name, batch).values()).numpy()
        row["output_shape"] = list(references[batches[0]].shape)

    step(row, "forward", forward)
    dynamic = step(row, "export_dynamic", lambda: dynamic_onnx_path(name))
    if dynamic is None:
        return row
    for batch in batches:
        engine = step(row, f"build_b{batch}", lambda: kiln.build_onnx(
            str(dynamic), target="cpu", profiles=input_profiles(name, batch)))
        if engine is None:
            continue
        if batch == batches[0]:
            row["layers"] = dict(layer_ops(engine))
        if batch in references:
            feeds = {k: v.numpy() for k, v in make_inputs(name, batch).items()}
            got = step(row, f"run_b{batch}", lambda: kiln.Engine(engine).run(feeds)["y"])
            if got is not None:
                row[f"rel_err_b{batch}"] = relative_error(got, references[batch])
    if compare_static:
        static = step(row, "export_static", lambda: onnx_path(name, batches[0]))
        if static is not None:
            engine = step(row, "build_static", lambda: kiln.build_onnx(str(static), target="cpu"))
            if engine is not None and "layers" in row:
                static_ops = dict(layer_ops(engine))
                row["same_layers_as_static"] = static_ops == row["layers"]
                if static_ops != row["layers"]:
                    row["static_layers"] = static_ops
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--compare-static", action="store_true")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args()
    for name in args.models:
        row = check(name, args.batches, args.compare_static)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(line + "\n")


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))
    main()
