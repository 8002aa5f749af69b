#!/usr/bin/env bash
# compute-sanitizer over kiln's CUDA kernels (gpu-check's `sanitize` stage): memcheck, racecheck and
# synccheck side by side, each over a spread of the conformance cases (every SANITIZE_SHARDS-th,
# default 4, so each op family is covered) and one model per architecture family at batch 1. Only
# kernels whose names hold "kiln" are instrumented (torch's, cuBLAS's and cuDNN's are not ours to
# check, and leaving them out keeps the run within minutes). memcheck is the slowest tool (about
# four times racecheck's time), so each tool's share is split over several processes that run at
# once (SANITIZE_PARTS_<TOOL>): part p of P takes the conformance cases i with i % (S*P) == p*S,
# whose union over the parts is exactly the i % S == 0 spread, and every P-th model.
# Logs: $OUT/sanitize_<tool>_<part>.log. Arguments go to pytest (gpu-check passes its -k
# selection). Exit status 0 only when every process ran clean and every test passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
PYTHON=${PYTHON:-python3}
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
SHARDS=${SANITIZE_SHARDS:-4}
mkdir -p "$OUT"
models=(resnet50 mobilenet_v3 convnext_tiny swin_t vit_b_16 bert_base gpt2 t5_small_encoder)
PYTEST_EXTRA=("$@")

sanitize_part() {  # tool, part, parts, sanitizer options...
  local tool=$1 part=$2 parts=$3; shift 3
  local tests=(tests/gpu/test_cuda_conformance.py) i
  for ((i = part; i < ${#models[@]}; i += parts)); do
    tests+=("tests/gpu/test_cuda_models.py::test_model_matches_pytorch[${models[i]}-1-fp16]")
  done
  KILN_CONFORMANCE_SHARD=$((part * SHARDS))/$((parts * SHARDS)) \
    "$CS" --tool "$tool" --kernel-name kns=kiln --error-exitcode 9 --print-limit 50 "$@" \
    "$PYTHON" -m pytest -q --no-header -p no:cacheprovider "${tests[@]}" "${PYTEST_EXTRA[@]}" \
    > "$OUT/sanitize_${tool}_$part.log" 2>&1
}

declare -A pids
start_tool() {  # tool, parts, sanitizer options...
  local tool=$1 parts=$2 part; shift 2
  for ((part = 0; part < parts; part++)); do
    sanitize_part "$tool" "$part" "$parts" "$@" &
    pids[$tool/$part]=$!
  done
}
start_tool memcheck "${SANITIZE_PARTS_MEMCHECK:-4}"
start_tool racecheck "${SANITIZE_PARTS_RACECHECK:-2}" --racecheck-report hazard
start_tool synccheck "${SANITIZE_PARTS_SYNCCHECK:-1}"
status=0
for key in $(printf '%s\n' "${!pids[@]}" | sort); do
  wait "${pids[$key]}"; rc=$?
  log="$OUT/sanitize_${key%/*}_${key#*/}.log"
  summary=$(grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|[0-9]+ (passed|failed)" "$log" | tail -2 | tr '\n' ' ')
  echo "$key rc=$rc: $summary"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
