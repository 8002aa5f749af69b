"""Depthwise convolutions on CUDA: kiln's own kernel against cuDNN, one fp16 layer at a time.

Each case is a one-layer fp16 engine (fp16 input, weights, bias and output, so the engine is the
convolution alone) of a depthwise convolution with bias from ConvNeXt-T (7x7), MobileNetV2 and
EfficientNet-B0 (3x3 and 5x5, strides 1 and 2), at batch 32 and 1, in NCHW or NHWC. NHWC engines
carry kiln_layout = "NHWC" on the layer itself (X [N, H, W, C], W [C, kH, kW, 1]), as the builder's
NHWC regions make it with KILN_CONV_LAYOUT=nhwc (a single convolution forms no region).

Every engine is built once (its tactic timed by the build) and timed with `kiln bench ENGINE
--profile 5 --json` (CUDA events around the layer, median) in up to three modes:

  recorded  the build's choice (kiln_depthwise or a cuDNN algorithm)
  kiln      KILN_DEPTHWISE=force: the own kernel
  cudnn     KILN_DEPTHWISE=off KILN_RECORDED_TACTICS=ignore: cuDNN's algorithms timed at load

and reports per mode the tactic that ran (from KILN_LOG_TACTICS=1), the layer's time, the GB/s of
the tensor bytes (input read once + output written once) and of the layer's bytes as `kiln bench`
counts them (weights and bias included), and the share of the GPU's peak DRAM bandwidth.

  python benchmarks/bench_depthwise.py [--out depthwise.json] [--cases ...] [--batches 32 1]
                                       [--layouts nchw nhwc] [--modes recorded kiln cudnn]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

import kiln  # noqa: E402

# name: (channels, spatial size, kernel, stride)
CASES = {
    "convnext_7x7_c96_56": (96, 56, 7, 1),
    "convnext_7x7_c384_14": (384, 14, 7, 1),
    "mobilenetv2_3x3_c144_56": (144, 56, 3, 1),
    "efficientnet_3x3_c32_112": (32, 112, 3, 1),
    "efficientnet_3x3_s2_c96_112": (96, 112, 3, 2),
    "efficientnet_5x5_s2_c144_56": (144, 56, 5, 2),
    "efficientnet_5x5_c240_28": (240, 28, 5, 1),
    "efficientnet_5x5_c672_14": (672, 14, 5, 1),
    "efficientnet_5x5_c1152_7": (1152, 7, 5, 1),
}
MODES = {
    "recorded": {},
    "kiln": {"KILN_DEPTHWISE": "force"},
    "cudnn": {"KILN_DEPTHWISE": "off", "KILN_RECORDED_TACTICS": "ignore"},
}
LAYER = "depthwise"


def build(channels, size, kernel, stride, batch, layout):
    """The fp16 one-layer engine, and its input and output shapes."""
    rng = np.random.default_rng(channels + size + kernel)
    pad = kernel // 2
    out = (size + 2 * pad - kernel) // stride + 1
    nhwc = layout == "nhwc"
    x_shape = [batch, size, size, channels] if nhwc else [batch, channels, size, size]
    y_shape = [batch, out, out, channels] if nhwc else [batch, channels, out, out]
    w = rng.uniform(-1, 1, size=(channels, 1, kernel, kernel)) / kernel
    if nhwc:
        w = w.transpose(0, 2, 3, 1)
    inits = [numpy_helper.from_array(w.astype(np.float16), "w"),
             numpy_helper.from_array(rng.uniform(-0.1, 0.1, size=channels).astype(np.float16), "b")]
    attrs = dict(group=channels, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    if nhwc:
        attrs["kiln_layout"] = "NHWC"
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name=LAYER, **attrs)
    graph = helper.make_graph([node], "depthwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, y_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return kiln.build_onnx(model.SerializeToString(), target="cuda", precision="fp16"), x_shape, y_shape


def bench(cli: Path, engine: Path, env_extra: dict) -> tuple[dict, str | None]:
    """`kiln bench --profile` of the engine under `env_extra`: the conv layer's profile row and the
    tactic it ran (KILN_LOG_TACTICS's line for the layer)."""
    env = dict(os.environ, KILN_LOG_TACTICS="1", **env_extra)
    for name in ("KILN_DEPTHWISE", "KILN_RECORDED_TACTICS"):
        if name not in env_extra:
            env.pop(name, None)
    done = subprocess.run([str(cli), "bench", str(engine), "--iterations", "30", "--profile", "5", "--json"],
                          check=True, capture_output=True, text=True, env=env)
    profile = json.loads(done.stdout)["profile"]
    layer = next(row for row in profile["slowest_layers"] if row["op"] == "Conv")
    tactics = re.findall(rf"^kiln tactic: layer '{LAYER}' \[.*\] -> (\S+)$", done.stderr, re.M)
    layer["peak_dram_gb_per_s"] = profile.get("peak_dram_gb_per_s")
    return layer, (tactics[-1] if tactics else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="depthwise.json")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    parser.add_argument("--layouts", nargs="+", default=["nchw", "nhwc"], choices=["nchw", "nhwc"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    cli = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"
    report = {"results": []}
    for case_name in args.cases:
        channels, size, kernel, stride = CASES[case_name]
        for batch in args.batches:
            for layout in args.layouts:
                row = {"case": case_name, "batch": batch, "layout": layout, "kernel": kernel, "stride": stride}
                try:
                    engine_bytes, x_shape, y_shape = build(channels, size, kernel, stride, batch, layout)
                    row.update(x=x_shape, y=y_shape)
                    tensor_bytes = 2 * (int(np.prod(x_shape)) + int(np.prod(y_shape)))
                    row["tensor_bytes"] = tensor_bytes
                    with tempfile.TemporaryDirectory() as tmp:
                        path = Path(tmp) / "engine.kiln"
                        path.write_bytes(engine_bytes)
                        for mode in args.modes:
                            layer, tactic = bench(cli, path, MODES[mode])
                            ms = layer["ms"]
                            row[mode] = {"tactic": tactic, "ms": ms,
                                         "tensor_gb_per_s": tensor_bytes / ms / 1e6,
                                         "layer_bytes": layer["bytes"], "layer_gb_per_s": layer["gb_per_s"]}
                            if layer.get("peak_dram_gb_per_s"):
                                row["peak_dram_gb_per_s"] = layer["peak_dram_gb_per_s"]
                                row[mode]["fraction_of_peak"] = tensor_bytes / ms / 1e6 / layer["peak_dram_gb_per_s"]
                    if "kiln" in row and "cudnn" in row:
                        row["kiln_speedup_over_cudnn"] = row["cudnn"]["ms"] / row["kiln"]["ms"]
                except Exception as error:  # record and go on
                    row["error"] = f"{type(error).__name__}: {error}"
                summary = " ".join(f"{mode} {row[mode]['tactic']} {row[mode]['ms']:.4f} ms "
                                   f"{row[mode]['tensor_gb_per_s']:.0f} GB/s" for mode in args.modes if mode in row)
                print(f"{case_name} b{batch} {layout}: {summary or row.get('error')}", flush=True)
                report["results"].append(row)
                Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))
    main()
