"""Per-call host overhead of kiln's PyTorch op on a tiny engine, next to a plain PyTorch op, from
Python and from C++ (examples/cpp_runtime), and the size of each library. Run on the GPU machine
by scripts/gpu-check.sh (stage overhead); prints one JSON object.

Each figure is the median over 5 rounds of the mean host time of 2000 back-to-back calls (the GPU
is synchronised once per round): what a caller pays per call when the work itself is tiny."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build"))
sys.path.insert(0, str(REPO / "python"))
os.environ.setdefault("KILN_LIB_DIR", str(BUILD / "lib"))

import kiln  # noqa: E402
import kiln.runtime  # noqa: E402

CALLS, ROUNDS = 2000, 5


def tiny_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def per_call_us(fn, sync) -> float:
    for _ in range(100):
        fn()
    sync()
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        sync()
        rounds.append((time.perf_counter() - start) / CALLS * 1e6)
    return float(np.median(rounds))


class Wrapped(torch.nn.Module):
    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kiln.execute_engine([x], self.engine)[0]


def cpp_per_call_us(module_path: Path, x: torch.Tensor, work: Path) -> float | None:
    binary_dir = work / "cpp_runtime"
    torch_dir = Path(torch.__file__).resolve().parent
    configure = ["cmake", "-S", str(REPO / "examples" / "cpp_runtime"), "-B", str(binary_dir), "-G", "Ninja",
                 f"-DKILN_BUILD_DIR={BUILD}", f"-DTORCH_DIR={torch_dir}",
                 f"-DTORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", "-DCMAKE_BUILD_TYPE=Release"]
    if subprocess.run(configure, capture_output=True).returncode != 0:
        return None
    if subprocess.run(["cmake", "--build", str(binary_dir)], capture_output=True).returncode != 0:
        return None
    inputs = work / "inputs.pt"
    torch.save([x], inputs)
    env = dict(os.environ, KILN_EXAMPLE_REPEAT=str(CALLS * ROUNDS))
    out = subprocess.run([str(binary_dir / "kiln_torch_example"), str(module_path), str(inputs)], env=env,
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("per call:"):
            return float(line.split()[2])
    return None


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kiln.runtime.load_library()
    engine = kiln.runtime.engine_from_bytes(kiln.build_onnx(tiny_model(), target=device))
    x = torch.randn(1, 16, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    scripted = torch.jit.script(Wrapped(engine))
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "python_torch_relu_us": per_call_us(lambda: torch.relu(x), sync),
        "python_execute_engine_us": per_call_us(lambda: torch.ops.kiln.execute_engine([x], engine), sync),
        "python_torchscript_forward_us": per_call_us(lambda: scripted(x), sync),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.ts"
        torch.jit.save(scripted, str(path))
        result["cpp_torchscript_forward_us"] = cpp_per_call_us(path, x, Path(tmp))
    for lib in ("libkiln_runtime.so", "libkiln_torch.so", "libkiln.so"):
        candidate = BUILD / "lib" / lib
        result[f"size_{lib}"] = candidate.stat().st_size if candidate.exists() else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
