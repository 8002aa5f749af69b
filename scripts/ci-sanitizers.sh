#!/usr/bin/env bash
# CI's sanitizer and fuzz stages (make test-sanitizers; make test runs them after the normal suites).
#
#   scripts/ci-sanitizers.sh [asan] [python] [fuzz] [tsan]      (default: all four, in that order)
#
# asan  clang build with ASan+UBSan and libFuzzer coverage (build-fuzz/, CPU only): the C++ unit
#       tests and the replay of tests/data/fuzz-regressions/ under ctest.
# python  the Python suite (tests/python) on that build's libraries and CLI, the ASan runtime
#       preloaded into the interpreter; the tests of the torch integration are left out (the
#       sanitizer build has no libkiln_torch.so: torch itself is not instrumented).
# fuzz  each fuzz target of tests/fuzz/ for FUZZ_SECONDS (default 30), libFuzzer seed FUZZ_SEED
#       (default 1, so every CI run tries the same inputs), from seeds written by
#       tests/fuzz/make_seeds.py (engines built with $KILN_CLI, default build/bin/kiln).
# tsan  gcc build with ThreadSanitizer (build-tsan/, CPU only): the threading tests.
#
# A stage whose tool is missing (clang, libFuzzer) is SKIPPED with a message and the script does not
# fail for it; the summary at the end lists passed and skipped stages apart. A stage that runs and
# finds a problem fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
TSAN_BUILD=${TSAN_BUILD:-build-tsan}
KILN_CLI=${KILN_CLI:-build/bin/kiln}
FUZZ_TARGETS=(engine_load engine_inspect onnx_import onnx_build npy json)
# The tests that start threads; TSan runs only these (the whole suite under TSan takes too long).
TSAN_FILTER=${TSAN_FILTER:-'*Thread*:*Concurren*:*Parallel*:Runtime.*'}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# LeakSanitizer's tracking of dynamic TLS (__tls_get_addr) mis-sizes the blocks of libraries loaded
# with dlopen in threads they did not start (oneDNN's OpenMP workers): its leak scan then crashes
# ("Tracer caught signal 11"). Without that interception LSan still scans static TLS and stacks.
export LSAN_OPTIONS=${LSAN_OPTIONS:-intercept_tls_get_addr=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(asan python fuzz tsan)
summary=()

note() { echo "== ci-sanitizers: $*"; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

# clang with libFuzzer's runtime: installs Debian's clang when missing and we may (root or sudo).
have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local runtime
  runtime=$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null) || return 1
  [ -f "$runtime" ]
}
ensure_clang() {
  have_libfuzzer && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo="sudo -n" || return 1
  fi
  note "installing clang (Debian) for the sanitizer and fuzz builds"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang; } >/dev/null 2>&1 || true
  have_libfuzzer
}

# Under ASan and TSan, libnvrtc's dlopen of libnvrtc-builtins does not search libnvrtc's own folder
# (the sanitizer's interceptor is the caller), so the NVRTC tests need that folder on the search path.
add_nvrtc_folder() {  # build folder
  local nvrtc_library
  nvrtc_library=$(sed -n 's/^KILN_NVRTC_LIBRARY:FILEPATH=//p' "$1/CMakeCache.txt")
  if [ -f "$nvrtc_library" ]; then
    export LD_LIBRARY_PATH="$(dirname "$nvrtc_library")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
}

configure_fuzz_build() {
  CC=clang CXX=clang++ "$VENV/bin/cmake" -S . -B "$FUZZ_BUILD" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$(realpath "$VENV")/bin/ninja" -DPython3_EXECUTABLE="$(realpath "$VENV")/bin/python" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DKILN_WITH_CUDA=OFF -DKILN_WITH_TORCH=OFF -DKILN_SANITIZE=address,undefined -DKILN_FUZZ=ON >/dev/null
}

stage_asan() {
  if ! ensure_clang; then
    summary+=("asan: SKIPPED (clang with libFuzzer is not installed and cannot be installed here)")
    return 0
  fi
  local start
  start=$(date +%s)
  configure_fuzz_build
  "$VENV/bin/cmake" --build "$FUZZ_BUILD" -j "$JOBS" --target kiln_unit_tests "${FUZZ_TARGETS[@]/#/fuzz_}"
  note "asan: built in $(seconds_since "$start") s"
  add_nvrtc_folder "$FUZZ_BUILD"
  "$VENV/bin/ctest" --test-dir "$FUZZ_BUILD" --output-on-failure -j "$JOBS" --timeout 900
  summary+=("asan: passed (ASan+UBSan C++ unit tests and fuzz regressions, $(seconds_since "$start") s)")
}

# Test files that load libkiln_torch.so, which the sanitizer build does not make (and the GPU
# suite's collection, a check of its imports that runs in a child without the preload).
# (test_quantize_models.py: full-size ResNet-50 and BERT-base, a minute here, several under ASan.)
PYTHON_TORCH_TESTS=(test_torch_runtime.py test_torch_compile.py test_deploy_examples.py
  test_deploy_fresh_process.py test_packaging.py test_gpu_suite_collects.py test_quantize_models.py)

stage_python() {
  if ! have_libfuzzer || [ ! -f "$FUZZ_BUILD/lib/libkiln.so" ]; then
    summary+=("python: SKIPPED (no ASan build: the asan stage did not run)")
    return 0
  fi
  local start runtime
  start=$(date +%s)
  "$VENV/bin/cmake" --build "$FUZZ_BUILD" -j "$JOBS" --target kiln kiln_runtime kiln_cli
  runtime=$(clang++ -print-file-name=libclang_rt.asan-x86_64.so)
  add_nvrtc_folder "$FUZZ_BUILD"
  local ignores=()
  for test in "${PYTHON_TORCH_TESTS[@]}"; do ignores+=("--ignore=tests/python/$test"); done
  # Leak checking is off here: CPython keeps objects alive at exit by design, which LSan would
  # report; the C++ suites run with it on.
  local env=(KILN_SANITIZER_PRELOAD="$runtime" LD_PRELOAD="$runtime" ASAN_OPTIONS=detect_leaks=0
    KILN_BUILD_DIR="$(realpath "$FUZZ_BUILD")" KILN_LIB_DIR="$(realpath "$FUZZ_BUILD")/lib")
  # The run proves nothing unless kiln loads the instrumented libraries under the ASan runtime.
  env "${env[@]}" "$VENV/bin/python" -c '
import os, sys
sys.path.insert(0, "python")
import kiln
kiln.runtime_version()
maps = open("/proc/self/maps").read()
assert "libclang_rt.asan" in maps, "the ASan runtime is not loaded"
assert os.environ["KILN_LIB_DIR"] + "/libkiln_runtime.so" in maps, "kiln did not load the sanitizer build"
'
  env "${env[@]}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "${ignores[@]}"
  summary+=("python: passed (the Python suite but the torch integration, on the ASan+UBSan libraries, $(seconds_since "$start") s)")
}

stage_fuzz() {
  if ! have_libfuzzer || [ ! -x "$FUZZ_BUILD/fuzz/fuzz_npy" ]; then
    summary+=("fuzz: SKIPPED (no libFuzzer build: the asan stage did not run)")
    return 0
  fi
  local start seeds
  start=$(date +%s)
  seeds="$FUZZ_BUILD/fuzz-seeds"
  rm -rf "$seeds" "$FUZZ_BUILD/fuzz-corpus" "$FUZZ_BUILD/fuzz-artifacts"
  "$VENV/bin/python" tests/fuzz/make_seeds.py "$seeds" --kiln "$KILN_CLI"
  for target in "${FUZZ_TARGETS[@]}"; do
    mkdir -p "$FUZZ_BUILD/fuzz-corpus/$target" "$FUZZ_BUILD/fuzz-artifacts/$target"
    note "fuzz: $target for ${FUZZ_SECONDS} s"
    # New inputs go to the scratch corpus; the seeds and regressions are read only.
    # A fixed seed: CI explores the same inputs every run (a finding there is reproducible, never
    # luck); scripts/fuzz-long.sh explores new ones.
    KILN_MEMORY_LIMIT=256M "$FUZZ_BUILD/fuzz/fuzz_$target" -seed="${FUZZ_SEED:-1}" -max_total_time="$FUZZ_SECONDS" -timeout=30 \
      -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/fuzz-artifacts/$target/" \
      "$FUZZ_BUILD/fuzz-corpus/$target" "$seeds/$target" "tests/data/fuzz-regressions/$target" 2>&1 |
      grep -E '^(stat::|INFO: seed corpus|#[0-9]+ +DONE|==[0-9]+==|SUMMARY|fuzz:)' || true
    if [ -n "$(ls -A "$FUZZ_BUILD/fuzz-artifacts/$target")" ]; then
      note "fuzz: $target found a problem: $(ls "$FUZZ_BUILD/fuzz-artifacts/$target")"
      note "reproduce: $FUZZ_BUILD/fuzz/fuzz_$target FILE; add FILE to tests/data/fuzz-regressions/$target/"
      exit 1
    fi
  done
  summary+=("fuzz: passed (${#FUZZ_TARGETS[@]} targets x ${FUZZ_SECONDS} s, $(seconds_since "$start") s)")
}

stage_tsan() {
  local start
  start=$(date +%s)
  "$VENV/bin/cmake" -S . -B "$TSAN_BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$(realpath "$VENV")/bin/ninja" \
    -DPython3_EXECUTABLE="$(realpath "$VENV")/bin/python" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DKILN_WITH_CUDA=OFF -DKILN_WITH_TORCH=OFF -DKILN_SANITIZE=thread >/dev/null
  "$VENV/bin/cmake" --build "$TSAN_BUILD" -j "$JOBS" --target kiln_unit_tests
  note "tsan: built in $(seconds_since "$start") s"
  add_nvrtc_folder "$TSAN_BUILD"
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} \
    "$TSAN_BUILD/tests/kiln_unit_tests" --gtest_filter="$TSAN_FILTER" --gtest_brief=1
  summary+=("tsan: passed (threading tests '$TSAN_FILTER', $(seconds_since "$start") s)")
}

for stage in "${stages[@]}"; do
  case "$stage" in
    asan | python | fuzz | tsan) "stage_$stage" ;;
    *) echo "unknown stage '$stage' (asan, python, fuzz, tsan)" >&2; exit 2 ;;
  esac
done
note "summary:"
for line in "${summary[@]}"; do echo "   $line"; done
