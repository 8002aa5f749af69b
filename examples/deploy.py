"""Deploying a compiled program from Python with torch and the kiln runtime libraries alone.

    python examples/deploy.py MODEL.ts|MODEL.pt2 INPUTS.pt [OUTPUTS.pt] [--lib PATH/libkiln_torch.so]

MODEL is a TorchScript file (kiln.save(..., format="torchscript") / torch.jit.save) or an
ExportedProgram (kiln.save(...) / torch.export.save). INPUTS.pt holds the forward arguments,
saved with torch.save([x, ...], "inputs.pt"); OUTPUTS.pt receives the outputs as a tuple.

Nothing of kiln's Python package, builder (libkiln.so), ONNX or protobuf is needed: only torch,
libkiln_torch.so and libkiln_runtime.so (found through libkiln_torch.so's RPATH, $ORIGIN: keep
the two side by side). The library is found from --lib, else $KILN_LIB_DIR.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def load_kiln_runtime(path: str | None) -> str:
    """Loads libkiln_torch.so, which registers torch.classes.kiln.Engine and torch.ops.kiln.*.
    It must happen before torch.jit.load / torch.export.load: they look those names up."""
    if path is None:
        directory = os.environ.get("KILN_LIB_DIR")
        if not directory:
            sys.exit("give --lib PATH/libkiln_torch.so or set KILN_LIB_DIR")
        path = os.path.join(directory, "libkiln_torch.so")
    torch.ops.load_library(path)
    return path


def load_program(path: Path):
    if path.suffix == ".ts":
        module = torch.jit.load(str(path))
        module.eval()
        return module
    return torch.export.load(str(path)).module()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("inputs", type=Path)
    parser.add_argument("outputs", type=Path, nargs="?")
    parser.add_argument("--lib", help="path of libkiln_torch.so (default: $KILN_LIB_DIR/libkiln_torch.so)")
    args = parser.parse_args()

    library = load_kiln_runtime(args.lib)
    print(f"loaded {library}: kiln runtime {torch.ops.kiln.runtime_version()}, "
          f"engine format {torch.ops.kiln.engine_format_version()}")
    program = load_program(args.model)
    inputs = torch.load(args.inputs)
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]

    with torch.inference_mode():
        result = program(*inputs)
    outputs = (result,) if isinstance(result, torch.Tensor) else tuple(result)
    for i, out in enumerate(outputs):
        head = ", ".join(f"{v:.6g}" for v in out.detach().flatten()[:8].tolist())
        print(f"output {i} {out.dtype}{list(out.shape)}: {head}{' ...' if out.numel() > 8 else ''}")
    if args.outputs:
        torch.save(tuple(o.cpu() for o in outputs), args.outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
