"""Writes the fuzz targets' seed corpora from the tests' own data (not checked in: a few MB).

    python tests/fuzz/make_seeds.py OUT_DIR [--kiln BUILD/bin/kiln] [--max-bytes N]

OUT_DIR/<target>/ gets, for each target of tests/fuzz/:
  onnx_import, onnx_build  the single-node ONNX models of tests/python (test_ops_vs_ort.py's CASES
                           and every cuda_cases_*.py table) plus a few multi-node graphs;
  engine_load              engines built from those models with the kiln CLI, and tests/data's;
  engine_inspect           the same engines, each behind a byte choosing the output form;
  npy                      .npy files of every dtype kiln reads, format versions 1.0 and 2.0,
                           and tests/data's;
  json                     `kiln inspect --json` of some of those engines, the repository's
                           .json files and a few documents with every JSON form.
Models or engines larger than --max-bytes (default 64 KiB) are skipped: the fuzzers mutate small
inputs faster, and large weights add little coverage. Engines are built from at most
--max-engines models (default 300: one CLI call each).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

CASE_TABLES = ["cuda_cases_attention", "cuda_cases_conv_transpose", "cuda_cases_dm", "cuda_cases_einsum",
               "cuda_cases_elementwise", "cuda_cases_group_normalization", "cuda_cases_index",
               "cuda_cases_nn", "cuda_cases_space_depth"]


def write_seed(directory: pathlib.Path, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def test_models() -> list[onnx.ModelProto]:
    """Every ONNX model the Python op tests build, each model once."""
    from kiln_testing import OpCase, case_from_tuple  # noqa: E402 (needs the sys.path above)

    entries = []
    for name in CASE_TABLES + ["test_ops_vs_ort"]:
        try:
            module = importlib.import_module(name)
        except Exception as e:  # a table that needs torch or a GPU helper: skip it, say so
            print(f"make_seeds: skipping {name}: {e}", file=sys.stderr)
            continue
        entries += list(getattr(module, "CASES", [])) + list(getattr(module, "SPECIAL_CASES", []))
    models = []
    for entry in entries:
        try:
            case = entry if isinstance(entry, OpCase) else case_from_tuple(entry)
            models.append(case.model())
        except Exception as e:  # cases ONNX itself rejects (they test kiln's refusals) stay out
            print(f"make_seeds: skipping a case: {type(e).__name__}", file=sys.stderr)
    return models + graph_models()


def graph_models() -> list[onnx.ModelProto]:
    """A few multi-node graphs: a conv block, a dynamic MLP, shape arithmetic into Expand."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.linspace(-1, 1, 108).tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [0.1, -0.2, 0.3, 0.0])
    conv = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]),
         helper.make_node("Flatten", ["p"], ["y"])],
        "conv_block", [x], [y], initializer=[w, b])
    xd = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    m1 = helper.make_tensor("m1", TensorProto.FLOAT, [4, 6], np.linspace(-1, 1, 24).tolist())
    m2 = helper.make_tensor("m2", TensorProto.FLOAT, [6, 2], np.linspace(-1, 1, 12).tolist())
    mlp = helper.make_graph(
        [helper.make_node("MatMul", ["x", "m1"], ["h"]), helper.make_node("Tanh", ["h"], ["t"]),
         helper.make_node("MatMul", ["t", "m2"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=-1)],
        "mlp", [xd], [y], initializer=[m1, m2])
    shape_ops = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("ConstantOfShape", ["s"], ["ones"],
                          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
         helper.make_node("Add", ["x", "ones"], ["a"]),
         helper.make_node("ReduceSum", ["a", "axes"], ["y"], keepdims=1)],
        "shape_ops", [xd], [y], initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    models = []
    for graph in (conv, mlp, shape_ops):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        models.append(model)
    return models


def npy_seeds() -> list[bytes]:
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal((2, 3)).astype(np.float32), np.float16([1.5, -2.0, np.inf]),
              np.arange(6, dtype=np.float64).reshape(3, 2), np.int8([-1, 2]), np.uint8([[1], [2]]),
              np.int16([300]), np.int32([[1, 2], [3, 4]]), np.int64([-5]), np.bool_([True, False]),
              np.uint16([0x3F80]), np.zeros((0, 4), np.float32), np.float32(3.0)]
    seeds = []
    for array in arrays:
        for version in ((1, 0), (2, 0)):
            out = io.BytesIO()
            np.lib.format.write_array(out, array, version=version)
            seeds.append(out.getvalue())
    return seeds


def json_seeds(engines: list[bytes], kiln: pathlib.Path) -> list[bytes]:
    """Documents for the JSON parser: `kiln inspect --json` of up to 20 engines, the repository's
    tracked .json files, and hand-written forms."""
    seeds = [b'{"a": [1, -2, 0.5, 1e+300, true, false, null], "b": {"c": "\\u00e9\\n"}}',
             b'[]', b'{}', b'"x"', b'-0', b'9223372036854775807', b'18446744073709551616',
             '{"caf\u00e9": "\U0001f600"}'.encode()]
    if kiln.exists():
        with tempfile.TemporaryDirectory() as tmp:
            for i, engine in enumerate(engines[:20]):
                path = pathlib.Path(tmp) / f"e{i}.kiln"
                path.write_bytes(engine)
                shown = subprocess.run([str(kiln), "inspect", "--json", str(path)], capture_output=True, timeout=60)
                if shown.returncode == 0:
                    seeds.append(shown.stdout[:16384])
    tracked = subprocess.run(["git", "ls-files", "*.json"], cwd=REPO, capture_output=True, text=True).stdout.split()
    for name in tracked:
        path = REPO / name
        if path.is_file() and path.stat().st_size <= 16384:
            seeds.append(path.read_bytes())
    return sorted(set(seeds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--kiln", type=pathlib.Path, default=REPO / "build" / "bin" / "kiln",
                        help="the kiln CLI that builds the engine seeds (none built when missing)")
    parser.add_argument("--max-bytes", type=int, default=64 << 10)
    parser.add_argument("--max-engines", type=int, default=300,
                        help="build engines from at most this many of the models, spread over all of them")
    args = parser.parse_args()

    models = [m.SerializeToString() for m in test_models()]
    models = sorted({m for m in models if len(m) <= args.max_bytes})
    for data in models:
        write_seed(args.out / "onnx_import", data)
        write_seed(args.out / "onnx_build", data)

    engines = [p.read_bytes() for p in sorted((REPO / "tests" / "data").rglob("*.kiln"))]
    if args.kiln.exists():
        with tempfile.TemporaryDirectory() as tmp:
            step = max(1, -(-len(models) // max(1, args.max_engines)))
            for i, data in enumerate(models[::step]):
                model_path = pathlib.Path(tmp) / f"m{i}.onnx"
                engine_path = pathlib.Path(tmp) / f"m{i}.kiln"
                model_path.write_bytes(data)
                try:
                    built = subprocess.run([str(args.kiln), "build", str(model_path), "-o", str(engine_path)],
                                           capture_output=True, timeout=120)
                except (OSError, subprocess.TimeoutExpired) as e:
                    print(f"make_seeds: {args.kiln} build failed: {e}", file=sys.stderr)
                    continue
                if built.returncode == 0:
                    engines.append(engine_path.read_bytes())
    else:
        print(f"make_seeds: {args.kiln} not found: only tests/data's engines are seeds", file=sys.stderr)
    engines = [e for e in engines if len(e) <= args.max_bytes]
    for data in engines:
        write_seed(args.out / "engine_load", data)
        for mode in range(4):
            write_seed(args.out / "engine_inspect", bytes([mode]) + data)

    for data in json_seeds(engines, args.kiln):
        write_seed(args.out / "json", data)

    npys = npy_seeds() + [p.read_bytes() for p in sorted((REPO / "tests" / "data").rglob("*.npy"))]
    for data in npys:
        write_seed(args.out / "npy", data)
    for target in sorted(p.name for p in args.out.iterdir()):
        print(f"make_seeds: {target}: {len(list((args.out / target).iterdir()))} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
