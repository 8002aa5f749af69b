#!/usr/bin/env bash
# compute-sanitizer over kiln's CUDA kernels (gpu-check's `sanitize` stage): memcheck, racecheck and
# synccheck side by side, each over a spread of the conformance cases (every SANITIZE_SHARDS-th,
# default 4, so each op family is covered) and one model per architecture family at batch 1. Only
# kernels whose names hold "kiln" are instrumented (torch's, cuBLAS's and cuDNN's are not ours to
# check, and leaving them out keeps the run within minutes). Logs: $OUT/sanitize_<tool>.log.
# Arguments go to pytest (gpu-check passes its -k selection). Exit status 0 only when every tool
# ran clean and every test passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
PYTHON=${PYTHON:-python3}
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
mkdir -p "$OUT"
tests=(tests/gpu/test_cuda_conformance.py)
for model in resnet50 mobilenet_v3 convnext_tiny swin_t vit_b_16 bert_base gpt2 t5_small_encoder; do
  tests+=("tests/gpu/test_cuda_models.py::test_model_matches_pytorch[$model-1-fp16]")
done
export KILN_CONFORMANCE_SHARD=0/${SANITIZE_SHARDS:-4}

sanitize() {  # tool, sanitizer options...
  local tool=$1; shift
  "$CS" --tool "$tool" --kernel-name kns=kiln --error-exitcode 9 --print-limit 50 "$@" \
    "$PYTHON" -m pytest -q --no-header -p no:cacheprovider "${tests[@]}" "${PYTEST_EXTRA[@]}" \
    > "$OUT/sanitize_$tool.log" 2>&1
}
PYTEST_EXTRA=("$@")
sanitize memcheck & memcheck=$!
sanitize racecheck --racecheck-report hazard & racecheck=$!
sanitize synccheck & synccheck=$!
status=0
for tool in memcheck racecheck synccheck; do
  wait "${!tool}"; rc=$?
  summary=$(grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|[0-9]+ (passed|failed)" "$OUT/sanitize_$tool.log" | tail -2 | tr '\n' ' ')
  echo "$tool rc=$rc: $summary"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
