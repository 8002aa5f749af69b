"""Per-layer GPU profile of kiln engines for the benchmark models, through the CLI:
kiln build --target cuda --fp16, then kiln bench --profile.

  python benchmarks/profile_models.py --models resnet50:1 bert_base:32 --top 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gpu"))

from gpu_models import export_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50:1", "bert_base:32"])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    cli = Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "bin" / "kiln"
    for spec in args.models:
        name, batch = spec.split(":")
        model, profiles, _ = export_for(name, int(batch))
        engine = model.with_name(f"{name}_b{batch}.fp16.kiln")
        # The dynamic-batch export pinned to this batch (min = max makes it static), as bench_models builds it.
        pins = [f"--profile={k}:min={'x'.join(map(str, s[0]))},max={'x'.join(map(str, s[2]))}"
                for k, s in (profiles or {}).items()]
        subprocess.run([str(cli), "build", str(model), "-o", str(engine), "--target", "cuda", "--fp16", *pins],
                       check=True)
        print(f"== {name} batch {batch} fp16", flush=True)
        subprocess.run([str(cli), "bench", str(engine), "--iterations", "50", "--profile", str(args.top)], check=True)


if __name__ == "__main__":
    main()
