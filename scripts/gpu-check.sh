#!/usr/bin/env bash
# Builds kiln on a GPU machine and runs the GPU tests and benchmarks in one go, writing logs and a
# summary to $OUT (default out/gpu-check). Default stages: build ctest conformance runtime torch
# plugins models generated bench overhead. Others, on request:
#   profile    per-layer times of the benchmark models;
#   multigpu   two GPUs: device errors, safe mode, a thread per GPU (skips with fewer GPUs);
#   sanitize   compute-sanitizer memcheck/racecheck/synccheck over a quarter of the conformance cases
#              and one model per family (SANITIZE_SHARDS=n checks every n-th case instead);
#   onnxcuda   the official ONNX backend cases on float32 CUDA engines; writes onnx_backend_cuda.json,
#              and with ONNX_UPDATE=1 rewrites tests/onnx_backend/expected_failures_cuda.txt;
#   detection  torchvision's detection models through kiln.compile, NMS/RoIAlign as plugins.
# The plugins stage runs the plugin library's CUDA unit tests and tests/gpu/test_cuda_plugin*.py.
# Example: scripts/gpu-check.sh build conformance
# Build dependencies missing there (nlohmann-json3-dev, libxxhash-dev) may come unpacked in .deps/root/usr.
# Environment: PYTHON (default python3: the one with torch), JOBS, KILN_GPU_CACHE (ONNX exports),
# ONNX_JOBS (onnxcuda worker processes, default 8), PYTEST_ARGS (extra pytest arguments, split on spaces), PYTEST_K (a pytest -k expression, spaces
# allowed: PYTEST_K="mobilenet or vit" runs part of a stage), CMAKE_ARGS (extra configure arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/out/gpu-check}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
BUILD=$REPO/build-gpu
STAGES=${*:-build ctest conformance runtime torch plugins models generated bench overhead}
mkdir -p "$OUT"
summary=$OUT/summary.txt
: > "$summary"
status=0

note() { echo "$*" | tee -a "$summary"; }
run_stage() {  # name, command...
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then
    note "PASS $name ($((SECONDS - start)) s)"
  else
    note "FAIL $name ($((SECONDS - start)) s): see $name.log"; status=1
  fi
  tail -n 3 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$summary"
}

# pytest is carried as wheels in .deps/wheels when the machine lacks it.
if ! "$PYTHON" -c "import pytest" 2>/dev/null && [ -d .deps/wheels ]; then
  "$PYTHON" -m pip install -q --no-index --find-links .deps/wheels --target .deps/pylib pytest >/dev/null 2>&1
  export PYTHONPATH=$REPO/.deps/pylib${PYTHONPATH:+:$PYTHONPATH}
fi
export KILN_BUILD_DIR=$BUILD KILN_LIB_DIR=$BUILD/lib PYTHONUNBUFFERED=1
# PYTEST_K selects tests without word splitting; a hung test dumps its stack after 300 s.
pytest_select=(-o faulthandler_timeout=300)
[ -n "${PYTEST_K:-}" ] && pytest_select+=(-k "$PYTEST_K")

note "kiln gpu-check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
note "python $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"

for stage in $STAGES; do
  case $stage in
    build)
      # The distribution's g++ links libstdc++ as a shared library, as the deployment targets do.
      compilers=""
      [ -x /usr/bin/g++ ] && compilers="-DCMAKE_CXX_COMPILER=/usr/bin/g++ -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++"
      # A machine without network gets build dependencies (nlohmann-json3-dev, libxxhash-dev) carried as Debian
      # packages unpacked into .deps/root (../shared/tools/carry-debs.sh).
      [ -d .deps/root/usr ] && compilers="$compilers -DCMAKE_PREFIX_PATH=$REPO/.deps/root/usr"
      run_stage build bash -c "cmake -S . -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release $compilers \
        -DPython3_EXECUTABLE=\$(command -v $PYTHON) -DCMAKE_CUDA_ARCHITECTURES=90 ${CMAKE_ARGS:-} && cmake --build '$BUILD' -j $JOBS" ;;
    ctest) run_stage ctest bash -c "cd '$BUILD' && ctest -j 8 --output-on-failure" ;;
    conformance) run_stage conformance "$PYTHON" -m pytest -q --tb=line -rf --no-header -p no:cacheprovider tests/gpu/test_cuda_conformance.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    runtime) run_stage runtime "$PYTHON" -m pytest -q --no-header -p no:cacheprovider tests/gpu/test_cuda_runtime.py tests/gpu/test_cuda_fusion.py tests/gpu/test_cuda_attention.py tests/gpu/test_cuda_layout.py tests/gpu/test_cuda_new_op_models.py tests/gpu/test_cuda_depthwise.py tests/gpu/test_cuda_misuse.py tests/gpu/test_cuda_soak.py tests/gpu/test_cuda_value_shapes.py tests/gpu/test_cuda_host_layers.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    torch) run_stage torch "$PYTHON" -m pytest -q --no-header -p no:cacheprovider tests/python/test_torch_runtime.py \
        tests/python/test_deploy_fresh_process.py tests/python/test_deploy_examples.py tests/python/test_torch_compile.py \
        tests/gpu/test_torch_compile_gpu.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    plugins) run_stage plugins bash -c "'$BUILD/tests/kiln_unit_tests' --gtest_filter='KilnPluginsCuda*' && \
        $PYTHON -m pytest -q --no-header -p no:cacheprovider tests/gpu/test_cuda_plugin*.py ${PYTEST_ARGS:-} ${PYTEST_K:+-k '$PYTEST_K'}" ;;
    detection) run_stage detection "$PYTHON" -m pytest -q -rf --no-header -p no:cacheprovider tests/gpu/test_cuda_detection_models.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    multigpu) run_stage multigpu "$PYTHON" -m pytest -q -rs --no-header -p no:cacheprovider tests/gpu/test_cuda_multi_gpu.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    models) run_stage models "$PYTHON" -m pytest -q -s --no-header -p no:cacheprovider tests/gpu/test_cuda_models.py ${PYTEST_ARGS:-} "${pytest_select[@]}" ;;
    generated) run_stage generated "$PYTHON" benchmarks/bench_generated.py --out "$OUT/generated.json" ;;
    bench) run_stage bench "$PYTHON" benchmarks/bench_models.py --out "$OUT/benchmarks.json" ${BENCH_ARGS:-} ;;
    overhead) run_stage overhead "$PYTHON" benchmarks/bench_overhead.py ;;
    onnxcuda) run_stage onnxcuda "$PYTHON" tests/onnx_backend/run.py --target cuda --jobs "${ONNX_JOBS:-8}" \
        --out "$OUT/onnx_backend_cuda.json" ${ONNX_UPDATE:+--update-expected} ;;
    sanitize) run_stage sanitize env OUT="$OUT" PYTHON="$PYTHON" scripts/gpu-sanitize.sh "${pytest_select[@]}" ;;
    profile) run_stage profile "$PYTHON" benchmarks/profile_models.py ${PROFILE_ARGS:-} ;;
    *) note "unknown stage '$stage'"; status=2 ;;
  esac
done
exit $status
