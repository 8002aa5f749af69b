"""Runs the official ONNX backend test cases (cases.py) on kiln's CPU engines and classifies each:

  pass      every output of every data set within the case's rtol/atol (16-bit outputs: within 2
            units in the last place at least), same dtype and shape
  refused   the build refused the model with a kiln error (an op, opset or dtype kiln lacks: the
            error names it)
  run-error the engine built but a run failed with a kiln error
  wrong     an output differs (dtype, shape or values): a silent wrong result, never acceptable
  crash     the process running the case died (a signal) or raised something other than a kiln
            error; timeout: it ran past --timeout

Cases run in worker processes, --chunk cases each, so that a crash takes down one chunk, which is
then re-run case by case to name the culprit.

  python tests/onnx_backend/run.py [--jobs N] [-k SUBSTRING] [--out results.json] [--update-expected]
                                   [--target cpu|cuda]

--target cuda builds float32 CUDA engines instead (a GPU machine; layers no CUDA kernel takes run
as host layers) and keeps its own list, expected_failures_cuda.txt. --build-only only builds each
case (status built or refused; a cuda case for sm_90, so no GPU is needed): what the target's load
checks take, as a first look where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The engines' target, for the workers too (they inherit the environment).
TARGET = os.environ.get("KILN_BACKEND_TARGET", "cpu")
# --build-only: build each case (a cuda one for sm_90 without a GPU) and stop; status "built".
BUILD_ONLY = os.environ.get("KILN_BACKEND_BUILD_ONLY") == "1"
EXPECTED = HERE / ("expected_failures.txt" if TARGET == "cpu" else f"expected_failures_{TARGET}.txt")
# The build under test, as tests/python/conftest.py finds it.
os.environ.setdefault("KILN_LIB_DIR", str(Path(os.environ.get("KILN_BUILD_DIR", REPO / "build")) / "lib"))


def load_expected() -> dict[str, tuple[str, str]]:
    """expected_failures.txt: name -> (status, reason)."""
    expected = {}
    for line in EXPECTED.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, status, reason = line.split("\t", 2)
        expected[name] = (status, reason)
    return expected


def write_expected(results: dict[str, dict]) -> None:
    """Rewrites expected_failures.txt from `results`, keeping the written reasons of entries whose
    status did not change; a new entry's reason is kiln's message (or the mismatch)."""
    old = load_expected() if EXPECTED.exists() else {}
    lines = [
        f"# The official ONNX backend cases kiln's {TARGET.upper()} engines do not pass (tests/onnx_backend/run.py),",
        "# one per line: name<TAB>status<TAB>reason. test_onnx_backend.py fails when a case not listed",
        "# here fails, when a listed case passes (remove it) and when a listed case fails another way.",
        "# Regenerate with `python tests/onnx_backend/run.py --update-expected"
        + ("" if TARGET == "cpu" else f" --target {TARGET}") + "` and review the diff.",
    ]
    for name in sorted(results):
        entry = results[name]
        if entry["status"] == "pass":
            continue
        # A refusal's reason is kiln's message, refreshed each time; the reasons of other listed
        # failures (disagreements with the reference) are written by hand and kept.
        keep = name in old and old[name][0] == entry["status"] and entry["status"] != "refused"
        reason = old[name][1] if keep else entry["detail"]
        reason = reason.replace("<bytes>: ", "").replace("\t", " ").replace("\n", " ")
        lines.append(f"{name}\t{entry['status']}\t{reason}")
    EXPECTED.write_text("\n".join(lines) + "\n")


def _compare(name: str, got, want, rtol: float, atol: float) -> str:
    import numpy as np

    got = np.asarray(got)
    want = np.asarray(want)
    # kiln hands bfloat16 outputs out as their uint16 bit patterns.
    if want.dtype.name == "bfloat16" and got.dtype == np.uint16:
        got = got.view(want.dtype)
    # 16-bit results are within tolerance when within 2 units in the last place of their type (the
    # reference rounds intermediate values at other places than kiln's kernels do): at least
    # rtol 2^-9 for float16 and 2^-6 for bfloat16, whatever tighter rtol the case asks.
    if want.dtype.name == "bfloat16" and got.dtype == want.dtype:  # compared as floats
        got, want = got.astype(np.float32), want.astype(np.float32)
        rtol = max(rtol, 2.0 ** -6)
    elif want.dtype == np.float16:
        rtol = max(rtol, 2.0 ** -9)
    # float8 outputs (ml_dtypes) must match exactly, as values: NaN codes may differ in sign.
    if want.dtype.name.startswith("float8") and got.dtype == want.dtype:
        g, w = got.astype(np.float32), want.astype(np.float32)
        same = np.array_equal(g, w, equal_nan=True) and np.array_equal(np.signbit(g) | np.isnan(g),
                                                                        np.signbit(w) | np.isnan(w))
        return "" if same else f"{name}: values differ"
    if want.dtype == object or got.dtype == object:
        return "" if got.dtype == want.dtype and np.array_equal(got, want) else f"{name}: object outputs differ"
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype}, expected {want.dtype}"
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, expected {want.shape}"
    if want.dtype.kind in "fc":
        try:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        except AssertionError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            return f"{name}: values differ ({'; '.join(lines[1:4])})"
        return ""
    return "" if np.array_equal(got, want) else f"{name}: values differ"


def _first_lines(message: str) -> str:
    """The first line of a kiln error, with the next one when the first only introduces it
    ("1 unsupported node:")."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if text.endswith(":") and len(lines) > 1:
        text += " " + lines[1]
    return text[:400]


def run_case(case) -> tuple[str, str]:
    """(status, detail) of one case, in this process."""
    import onnx

    import kiln

    model = onnx.load_from_string(case.model)
    initializers = {t.name for t in model.graph.initializer}
    input_names = [i.name for i in model.graph.input if i.name not in initializers]
    output_names = [o.name for o in model.graph.output]
    try:
        if BUILD_ONLY:
            kiln.build_onnx(case.model, target=TARGET, **({"cuda_arch": 90} if TARGET == "cuda" else {}))
            return "built", ""
        engine = kiln.Engine(kiln.build_onnx(case.model, target=TARGET))
    except kiln.KilnError as error:
        return "refused", _first_lines(str(error))
    for index, (inputs, outputs) in enumerate(case.data_sets):
        feeds = dict(zip(input_names, inputs))
        try:
            got = engine.run(feeds)
        except kiln.KilnError as error:
            return "run-error", f"data set {index}: " + str(error).splitlines()[0][:400]
        for name, want in zip(output_names, outputs):
            if name not in got:
                return "wrong", f"output '{name}' missing"
            problem = _compare(name, got[name], want, case.rtol, case.atol)
            if problem:
                return "wrong", f"data set {index}: {problem}"[:400]
    return "pass", ""


def _worker(names_file: str, out_file: str) -> None:
    """Runs the cases named in names_file, appending one JSON line per finished case to out_file."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO / "python"))
    import cases as case_module

    wanted = json.loads(Path(names_file).read_text())
    wanted_set = set(wanted)
    by_name = {c.name: c for c in case_module.all_cases() if c.name in wanted_set}
    with open(out_file, "a") as out:
        for name in wanted:
            try:
                status, detail = run_case(by_name[name])
            except Exception as error:  # anything but a kiln error is a crash of kiln's contract
                status, detail = "crash", f"{type(error).__name__}: {str(error)[:300]}"
            out.write(json.dumps({"name": name, "status": status, "detail": detail}) + "\n")
            out.flush()


def _run_chunk(names: list[str], timeout: float) -> dict[str, dict]:
    """Runs `names` in one child; cases it never reported are re-run alone (crash culprits)."""
    with tempfile.TemporaryDirectory() as tmp:
        names_file, out_file = os.path.join(tmp, "names.json"), os.path.join(tmp, "out.jsonl")
        Path(names_file).write_text(json.dumps(names))
        Path(out_file).touch()
        try:
            child = subprocess.run([sys.executable, __file__, "--worker", names_file, out_file],
                                   capture_output=True, text=True, timeout=timeout)
            ended = f"exit {child.returncode}: {child.stderr.strip().splitlines()[-1][:300] if child.stderr.strip() else ''}"
        except subprocess.TimeoutExpired:
            ended = "timeout"
        results = {}
        for line in Path(out_file).read_text().splitlines():
            entry = json.loads(line)
            results[entry["name"]] = entry
    missing = [n for n in names if n not in results]
    if missing and len(names) == 1:
        status = "timeout" if ended == "timeout" else "crash"
        results[missing[0]] = {"name": missing[0], "status": status, "detail": ended}
    elif missing:
        for name in missing:
            results.update(_run_chunk([name], timeout))
    return results


def case_names() -> list[str]:
    """Every case's name, generated in a fresh interpreter: onnx's node case generators register
    their cases as their modules are first imported, so a process that imported some of them
    already (a test suite) would collect only part."""
    listed = subprocess.run([sys.executable, __file__, "--list"], capture_output=True, text=True, check=True)
    return json.loads(listed.stdout.strip().splitlines()[-1])


def run_all(names: list[str], jobs: int, chunk: int = 0, timeout: float = 900.0,
            on_chunk=None) -> dict[str, dict]:
    """Every case's result. Each worker generates all cases once (a few seconds), so by default
    (chunk 0) the cases go out in two chunks per job, not one worker per hundred. `on_chunk`, when
    given, is called with the results so far each time a chunk ends (in the order they end)."""
    if chunk <= 0:
        chunk = max(1, -(-len(names) // (2 * max(1, jobs))))
    chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done in as_completed([pool.submit(_run_chunk, c, timeout) for c in chunks]):
            results.update(done.result())
            if on_chunk:
                on_chunk(results)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=0, help="cases per worker (default: two chunks per job)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per chunk")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument("--update-expected", action="store_true",
                        help="rewrite expected_failures.txt from this run (all cases)")
    parser.add_argument("--target", choices=["cpu", "cuda"], default=TARGET,
                        help="the engines' target (default cpu; cuda needs a GPU)")
    parser.add_argument("--list", action="store_true", help="print the case names as JSON and stop")
    parser.add_argument("--build-only", action="store_true",
                        help="only build each case (cuda: for sm_90, no GPU needed), status built or refused: "
                             "what a target's load checks take, without running anything")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.target != TARGET or (args.build_only and not BUILD_ONLY):  # re-read by this process and every worker
        os.environ["KILN_BACKEND_TARGET"] = args.target
        if args.build_only:
            os.environ["KILN_BACKEND_BUILD_ONLY"] = "1"
        return subprocess.run([sys.executable, __file__, *sys.argv[1:]]).returncode
    if args.worker:
        _worker(*args.worker)
        return 0
    if args.list:
        sys.path.insert(0, str(HERE))
        import cases as case_module

        print(json.dumps([c.name for c in case_module.all_cases()]))
        return 0
    sys.path.insert(0, str(HERE))
    import cases as case_module

    names = [c.name for c in case_module.all_cases() if args.k in c.name]
    start = time.time()

    def report(results: dict, complete: bool) -> None:
        # Written after every chunk too, so that a run stopped part-way still tells what it ran.
        counts = collections.Counter(r["status"] for r in results.values())
        print(f"{len(results)} of {len(names)} cases in {time.time() - start:.0f} s: " +
              ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"complete": complete, "counts": counts, "results": results},
                                                 indent=1, sort_keys=True))

    results = run_all(names, args.jobs, args.chunk, args.timeout,
                      on_chunk=lambda r: report(r, complete=len(r) == len(names)))
    if not names:
        report(results, complete=True)
    if args.update_expected:
        if args.build_only:
            parser.error("--update-expected needs the cases run, not only built")
        if args.k:
            parser.error("--update-expected needs the whole suite (no -k)")
        write_expected(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
