#!/usr/bin/env bash
# A long fuzz run for a many-core machine (the GPU machine has 16 cores):
#
#   scripts/fuzz-long.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds the libFuzzer targets (build-fuzz/, clang, ASan+UBSan, CPU only) when needed, writes the
# seed corpora (tests/fuzz/make_seeds.py), then runs each target with all cores (libFuzzer
# -fork=N: N worker processes sharing one corpus, crashes do not stop the run) for
# SECONDS_PER_TARGET (default 3600). Corpora grow in fuzz-out/corpus/<target>/ and are reused by
# the next run; crashes land in fuzz-out/artifacts/<target>/ and the per-target executions and
# results in fuzz-out/summary.txt. A crash is fixed by adding its file to
# tests/data/fuzz-regressions/<target>/ (ctest replays it) together with the fix.
#
# Environment: JOBS (default nproc), OUT (default fuzz-out), KILN_CLI (the kiln CLI that builds the
# engine seeds; default build/bin/kiln, else build-fuzz's), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-3600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(engine_load engine_inspect onnx_import onnx_build npy json)
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-fuzz-out}
VENV=${VENV:-.venv}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# A server building users' models caps memory; so do the fuzzers (huge shapes fail as errors).
export KILN_MEMORY_LIMIT=${KILN_MEMORY_LIMIT:-256M}

if [ ! -x "$FUZZ_BUILD/fuzz/fuzz_npy" ]; then
  CC=clang CXX=clang++ "$VENV/bin/cmake" -S . -B "$FUZZ_BUILD" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$(realpath "$VENV")/bin/ninja" -DPython3_EXECUTABLE="$(realpath "$VENV")/bin/python" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DKILN_WITH_CUDA=OFF -DKILN_WITH_TORCH=OFF -DKILN_SANITIZE=address,undefined -DKILN_FUZZ=ON
fi
"$VENV/bin/cmake" --build "$FUZZ_BUILD" -j "$JOBS" --target kiln_cli "${TARGETS[@]/#/fuzz_}"
KILN_CLI=${KILN_CLI:-build/bin/kiln}
[ -x "$KILN_CLI" ] || KILN_CLI="$FUZZ_BUILD/bin/kiln"
ASAN_OPTIONS=detect_leaks=0 "$VENV/bin/python" tests/fuzz/make_seeds.py "$OUT/seeds" --kiln "$KILN_CLI"

mkdir -p "$OUT"
for target in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$target" "$OUT/artifacts/$target" "$OUT/logs/$target"
  echo "== fuzz-long: $target, $JOBS jobs, $SECONDS_PER_TARGET s"
  status=0
  (cd "$OUT/logs/$target" &&
   "$OLDPWD/$FUZZ_BUILD/fuzz/fuzz_$target" -fork="$JOBS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
     -max_total_time="$SECONDS_PER_TARGET" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
     -artifact_prefix="$OLDPWD/$OUT/artifacts/$target/" \
     "$OLDPWD/$OUT/corpus/$target" "$OLDPWD/$OUT/seeds/$target" "$OLDPWD/tests/data/fuzz-regressions/$target") \
     >"$OUT/logs/$target.log" 2>&1 || status=$?
  # -fork reports the total executions of all workers in its last "#N" status line.
  executions=$(grep -oE '^#[0-9]+' "$OUT/logs/$target.log" | tail -n 1 | tr -d '#')
  findings=$(find "$OUT/artifacts/$target" -type f | wc -l)
  echo "$(date -u +%FT%TZ) $target: ${executions:-0} executions in ${SECONDS_PER_TARGET} s x ${JOBS} jobs, " \
       "$findings crash/timeout/oom files, exit $status" | tee -a "$OUT/summary.txt"
done
echo "== fuzz-long: summary in $OUT/summary.txt; findings under $OUT/artifacts/"
