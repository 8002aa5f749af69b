"""The custom-plugin example, end to end (README.md says what each step shows).

    python run_example.py all --plugin build/libscaled_gelu_plugin.so --kiln-lib PREFIX/lib --work DIR
runs the steps below, each in its own process:

    compile --plugin LIB --work DIR
        kiln.compile the small model with the plugin loaded (kiln.load_plugin_library): the custom
        op becomes a plugin layer; saves DIR/model.pt2 (kiln.save), DIR/inputs.pt and eager
        PyTorch's DIR/expected.pt.
    deploy --kiln-lib PREFIX/lib --work DIR [--dlopen LIB]
        runs DIR/model.pt2 with torch, libkiln_torch.so, libkiln_runtime.so and the plugin only
        (no kiln Python package, no builder, no definition of the custom op), the plugin loaded
        by LD_PRELOAD (set by the caller) or by --dlopen (kiln_load_plugin_library through
        ctypes); checks the outputs against expected.pt.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def compile_step(plugin: str, work: Path) -> None:
    import kiln

    sys.path.insert(0, str(HERE))
    from scaled_gelu_op import SmallModel, example_inputs

    kiln.load_plugin_library(plugin)
    model = SmallModel().eval()
    inputs = example_inputs()
    compiled = kiln.compile(model, inputs, require_full_compilation=True)
    print(compiled.kiln_report)
    work.mkdir(parents=True, exist_ok=True)
    kiln.save(compiled, work / "model.pt2")
    torch.save(list(inputs), work / "inputs.pt")
    with torch.no_grad():
        expected = model(*inputs)
    torch.save(expected, work / "expected.pt")
    got = compiled(*inputs)
    print(f"compiled vs eager: max abs difference {(got - expected).abs().max().item():.3g}")


def deploy_step(kiln_lib: Path, work: Path, dlopen: str | None) -> None:
    # libkiln_torch.so registers torch.classes.kiln.Engine and torch.ops.kiln.execute_engine; it
    # finds libkiln_runtime.so beside it (RPATH $ORIGIN), the one registry the plugin joins.
    torch.ops.load_library(str(kiln_lib / "libkiln_torch.so"))
    if dlopen:
        runtime = ctypes.CDLL(str(kiln_lib / "libkiln_runtime.so"))
        runtime.kiln_last_error.restype = ctypes.c_char_p
        if runtime.kiln_load_plugin_library(dlopen.encode()) != 0:
            sys.exit(f"kiln_load_plugin_library: {runtime.kiln_last_error().decode()}")
    program = torch.export.load(str(work / "model.pt2")).module()
    inputs = torch.load(work / "inputs.pt")
    expected = torch.load(work / "expected.pt")
    with torch.inference_mode():
        got = program(*inputs)
    difference = (got - expected).abs().max().item()
    loaded = f"dlopen of {dlopen}" if dlopen else "LD_PRELOAD"
    print(f"deployed ({loaded}): max abs difference to eager {difference:.3g}")
    assert "kiln" not in sys.modules and "scaled_gelu_op" not in sys.modules
    if difference > 1e-4:
        sys.exit(f"outputs differ from eager PyTorch by {difference}")


def all_steps(plugin: str, kiln_lib: Path, work: Path) -> None:
    me = [sys.executable, str(Path(__file__).resolve())]
    subprocess.run(me + ["compile", "--plugin", plugin, "--work", str(work)], check=True)
    deploy = me + ["deploy", "--kiln-lib", str(kiln_lib), "--work", str(work)]
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), plugin]))
    subprocess.run(deploy, check=True, env={**os.environ, "LD_PRELOAD": preload})
    subprocess.run(deploy + ["--dlopen", plugin], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["all", "compile", "deploy"])
    parser.add_argument("--plugin", help="path of libscaled_gelu_plugin.so")
    parser.add_argument("--kiln-lib", type=Path, help="lib/ of the installed kiln")
    parser.add_argument("--work", type=Path, default=Path("custom_plugin_out"))
    parser.add_argument("--dlopen", help="deploy: load this plugin with kiln_load_plugin_library")
    args = parser.parse_args()
    if args.step == "compile":
        compile_step(os.path.abspath(args.plugin), args.work)
    elif args.step == "deploy":
        deploy_step(args.kiln_lib, args.work, args.dlopen)
    else:
        all_steps(os.path.abspath(args.plugin), args.kiln_lib, args.work)


if __name__ == "__main__":
    main()
