"""The command line of :func:`kiln.quantize`: an ONNX model and a folder of calibration batches in,
the Q/DQ model out, for ``kiln build`` to compile.

    python -m kiln.calibrate MODEL.onnx OUT.onnx --batches DIR [--dtype int8|fp8]
                             [--method entropy|minmax|percentile] [--percentile P]
                             [--exclude NAME_OR_OP ...] [--cache FILE]

DIR holds one file per batch, read in name order: ``.npz`` archives of arrays by input name, or,
for a one-input model, ``.npy`` arrays. With ``--cache FILE`` naming an existing cache, no batches
are needed. Exits 0 on success, 1 on an error (printed), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from ._capi import InvalidArgumentError, KilnError

__all__ = ["main", "read_batches"]


def read_batches(directory: "str | os.PathLike") -> list:
    """The calibration batches of a folder (module doc). Raises InvalidArgumentError for a missing
    folder, a folder with no .npz/.npy file, a mix of the two, or a file numpy cannot read."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidArgumentError(f"calibration batches: {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npz", ".npy") and p.is_file())
    if not files:
        raise InvalidArgumentError(f"calibration batches: {folder} has no .npz or .npy file")
    if len({p.suffix for p in files}) > 1:
        raise InvalidArgumentError(f"calibration batches: {folder} mixes .npz and .npy files; use "
                                   ".npz archives (arrays by input name) for every batch")
    batches = []
    for path in files:
        try:
            if path.suffix == ".npy":
                batches.append(np.load(path, allow_pickle=False))
            else:
                with np.load(path, allow_pickle=False) as archive:
                    batches.append({name: archive[name] for name in archive.files})
        except (OSError, ValueError) as error:
            raise InvalidArgumentError(f"calibration batches: {path}: {error}") from error
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiln.calibrate",
                                     description="Quantize an ONNX model into Q/DQ form from calibration batches.")
    parser.add_argument("model", help="the float ONNX model")
    parser.add_argument("output", help="where to write the quantized ONNX model")
    parser.add_argument("--batches", metavar="DIR", help="folder of calibration batches (.npz or .npy)")
    parser.add_argument("--dtype", choices=("int8", "fp8"), default="int8")
    parser.add_argument("--method", choices=("entropy", "minmax", "percentile"), default="entropy")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NAME_OR_OP",
                        help="node names or op types to keep in floating point")
    parser.add_argument("--cache", metavar="FILE", help="calibration cache: read if it exists, else written")
    args = parser.parse_args(argv)
    if args.batches is None and not (args.cache and os.path.exists(args.cache)):
        parser.error("--batches DIR is needed unless --cache names an existing cache file")
    try:
        import onnx

        from ._quantize import quantize

        batches = read_batches(args.batches) if args.batches else None
        model = quantize(args.model, batches, dtype=args.dtype, method=args.method,
                         percentile=args.percentile, exclude=args.exclude, cache=args.cache,
                         report=True)
        onnx.save(model, args.output)
    except (KilnError, OSError) as error:
        print(f"python -m kiln.calibrate: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
