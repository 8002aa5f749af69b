"""The official ONNX backend test cases (cases.py) on kiln's CPU engines, in CI. Every case passes
except those listed in expected_failures.txt with kiln's status and a reason; a listed case that
now passes, or fails another way, fails this test too, so the list changes only knowingly. No
case may crash or time out, listed or not."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def test_onnx_backend_cases_pass_or_fail_as_listed():
    names = run.case_names()
    assert len(names) > 1800, f"only {len(names)} cases generated"
    results = run.run_all(names, jobs=os.cpu_count() or 1)
    expected = run.load_expected()
    broken = [f"{n}: {r['status']}: {r['detail']}" for n, r in results.items() if r["status"] in ("crash", "timeout")]
    unexpected = [f"{n}: {r['status']}: {r['detail']}" for n, r in results.items()
                  if r["status"] != "pass" and n not in expected]
    now_pass = [n for n, r in results.items() if r["status"] == "pass" and n in expected]
    changed = [f"{n}: listed {expected[n][0]}, now {r['status']}: {r['detail']}" for n, r in results.items()
               if r["status"] != "pass" and n in expected and expected[n][0] != r["status"]]
    stale = sorted(set(expected) - set(results))
    passed = sum(r["status"] == "pass" for r in results.values())
    print(f"{passed} of {len(results)} ONNX backend cases pass; {len(expected)} listed as expected failures")
    problems = []
    for title, items in (("crashed or timed out", broken), ("failed, not listed", unexpected),
                         ("pass now: remove them from expected_failures.txt", now_pass),
                         ("fail another way than listed", changed),
                         ("listed but no longer generated", stale)):
        if items:
            problems.append(f"{len(items)} {title}:\n  " + "\n  ".join(sorted(items)[:40]))
    assert not problems, "\n".join(problems)
