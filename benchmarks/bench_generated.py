"""Memory bandwidth of kiln's generated kernels on large fp16 tensors, against PyTorch on the same GPU.

Each case is one ONNX graph of pointwise ops (or a reduction) over a large tensor, built as an fp16
engine whose inputs and outputs are fp16 (so the engine is one generated kernel). Reported, from
`kiln bench ENGINE --profile` (CUDA events around the layer, median): the kernel's time, the bytes it
must move (inputs read once, outputs written once), the achieved GB/s and its share of the GPU's
peak DRAM bandwidth; and the GB/s of a device-to-device copy of the input (torch), the practical
ceiling.

  python benchmarks/bench_generated.py [--out generated.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

import kiln  # noqa: E402

def _const(name, value, dtype=np.float16):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def gelu_case(shape):
    # ConvNeXt's MLP activation as torch exports it, with the bias add before it.
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["h"]),
        helper.make_node("Div", ["h", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["h", "p"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    inits = [_const("bias", np.linspace(-1, 1, shape[-1])), _const("sqrt2", 1.4142135),
             _const("one", 1.0), _const("half", 0.5)]
    return nodes, inits, ["x"], 2


def silu_case(shape):
    # EfficientNet's SiLU with a per-channel scale and shift (a folded BatchNorm left unfused).
    c = shape[1]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["s"]),
        helper.make_node("Add", ["s", "shift"], ["b"]),
        helper.make_node("Sigmoid", ["b"], ["g"]),
        helper.make_node("Mul", ["b", "g"], ["y"]),
    ]
    inits = [_const("scale", np.linspace(0.5, 1.5, c).reshape(c, 1, 1)),
             _const("shift", np.linspace(-1, 1, c).reshape(c, 1, 1))]
    return nodes, inits, ["x"], 2


def residual_add_case(shape):
    nodes = [helper.make_node("Add", ["x", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    return nodes, [], ["x", "r"], 3


def layernorm_case(shape):
    e = shape[-1]
    nodes = [helper.make_node("Add", ["x", "r"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g", "b"], ["y"], axis=-1, epsilon=1e-5)]
    return nodes, [_const("g", np.ones(e)), _const("b", np.zeros(e))], ["x", "r"], 3


def softmax_case(shape):
    nodes = [helper.make_node("Mul", ["x", "scale"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=-1)]
    return nodes, [_const("scale", 0.125)], ["x"], 2


def silu_mean_case(shape):
    # Squeeze-excitation's squeeze in NHWC (EfficientNet's first block at batch 32): the SiLU output,
    # stored, and its mean over H and W, one column reduction with few columns and long rows.
    nodes = [helper.make_node("Sigmoid", ["x"], ["g"]), helper.make_node("Mul", ["x", "g"], ["y"]),
             helper.make_node("ReduceMean", ["y", "axes"], ["pooled"], keepdims=1)]
    pooled = [shape[0], 1, 1, shape[3]]
    return nodes, [_const("axes", [1, 2], np.int64)], ["x"], 2, [("pooled", pooled)]


CASES = {
    "gelu_bias_nhwc": (gelu_case, (32, 56, 56, 384)),
    "silu_bn_nchw": (silu_case, (32, 96, 112, 112)),
    "residual_add_relu": (residual_add_case, (32, 56, 56, 256)),
    "add_layernorm_768": (layernorm_case, (32 * 128, 768)),
    "scale_softmax_128": (softmax_case, (32 * 12 * 128, 128)),
    "silu_mean_nhwc": (silu_mean_case, (32, 112, 112, 32)),
}


def build(case, shape):
    nodes, inits, inputs, _, *extra = case(shape)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT16, list(shape))]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT16, s) for n, s in (extra[0] if extra else [])]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info(n, TensorProto.FLOAT16, list(shape)) for n in inputs],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    return kiln.build_onnx(model.SerializeToString(), target="cuda", precision="fp16"), inputs


def time_gpu(fn, calls=50, samples=7) -> float:
    """Milliseconds of GPU time per `fn` call: CUDA events around `calls` back-to-back calls (each
    call enqueues far less host work than its kernel runs, so the GPU never waits for the host)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="generated.json")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    args = parser.parse_args()
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "results": []}
    cli = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"
    for case_name in args.cases:
        case, shape = CASES[case_name]
        row = {"case": case_name, "shape": list(shape)}
        try:
            engine_bytes, input_names = build(case, shape)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "engine.kiln"
                path.write_bytes(engine_bytes)
                done = subprocess.run([str(cli), "bench", str(path), "--iterations", "30", "--profile", "5", "--json"],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"kiln bench exited {done.returncode}: {done.stderr.strip()[-500:]}")
                out = done.stdout
            profile = json.loads(out)["profile"]
            layer = profile["slowest_layers"][0]
            row.update(kiln_layers=profile["layers"], kiln_op=layer["op"], kiln_ms=layer["ms"], bytes=layer["bytes"],
                       kiln_gbs=layer["gb_per_s"], peak_gbs=profile.get("peak_dram_gb_per_s"))
            if row["peak_gbs"]:
                row["kiln_fraction_of_peak"] = row["kiln_gbs"] / row["peak_gbs"]
            x = torch.randn(shape, device="cuda", dtype=torch.float16)
            y = torch.empty_like(x)
            row["copy_gbs"] = 2 * x.numel() * 2 / time_gpu(lambda: y.copy_(x)) / 1e6
        except Exception as error:  # record and go on
            row["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(row), flush=True)
        report["results"].append(row)
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))
    main()
