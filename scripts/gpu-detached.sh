#!/usr/bin/env bash
# Runs gpu-check stages on the GPU machine in a process that outlives the device tool's call, so a
# session whose calls are capped at 10 minutes can run 20 minutes of stages: each call starts the
# driver if it is not running yet, waits up to POLL seconds, prints the progress and packs what is
# done into $OUT/gpu-detached.tgz. Call it again (within the machine's idle time) until it prints
# ALLDONE. Build dependencies the machine lacks come in .deps/root (see gpu-check.sh): there,
# ../shared/tools/carry-debs.sh nlohmann-json3-dev libxxhash-dev, and carry [".deps/root"].
#   PLAN=correctness (default): build, then every correctness stage side by side (ctest+conformance,
#     runtime+torch, plugins+detection, sanitize, onnxcuda with ONNX_UPDATE=1, models); no timings.
#   PLAN=full: build; generated, bench and overhead alone on the GPU; then the correctness stages.
#   TIMING_STAGES (default "generated bench overhead") are the stages PLAN=full runs alone; add
#     `profile` (with PROFILE_ARGS) for per-layer times.
#   CHECK_GROUPS (default "ctest runtime plugins sanitize onnxcuda models") picks the side-by-side groups:
#     ctest = ctest+conformance, runtime = runtime+torch, plugins = plugins+detection.
#   FOCUS_K (a pytest -k expression, e.g. "value_shapes or host_layers or soak"): right after the
#     build, before anything else, the runtime stage's tests it selects run alone (group "focus"),
#     so that what a session changed is known first even if the machine goes away.
#   STAGE_TIMEOUT (default 400 s) caps each side-by-side group; RESULTS (default out/gpu-detached).
set -u
cd "$(dirname "$0")/.."
R=${RESULTS:-$PWD/out/gpu-detached}
PLAN=${PLAN:-correctness}

drive() {
  export PYTHON=${PYTHON:-python3} JOBS=${JOBS:-$(nproc)}
  local t=${STAGE_TIMEOUT:-400}
  log() { echo "$(date +%T) $*" >> "$R/driver.log"; }
  group() {  # name, gpu-check stages...
    local name=$1; shift
    OUT=$R/$name timeout "$t" scripts/gpu-check.sh "$@" > /dev/null 2>&1
    local rc=$?
    log "$name ($*) rc=$rc"
    return $rc
  }
  log "start, plan $PLAN"
  group build build
  local built=$?
  cat "$R/build/summary.txt" >> "$R/driver.log"
  if [ $built -ne 0 ]; then  # nothing else can run: say so at once (build.log says why)
    tail -n 40 "$R/build/build.log" >> "$R/driver.log"
    log done; touch "$R/DONE"; return
  fi
  [ -n "${FOCUS_K:-}" ] && (export PYTEST_K=$FOCUS_K; group focus runtime)
  # shellcheck disable=SC2086  # a list of stage names
  [ "$PLAN" = full ] && group timings ${TIMING_STAGES:-generated bench overhead}
  local g
  for g in ${CHECK_GROUPS:-ctest runtime plugins sanitize onnxcuda models}; do
    case $g in
      ctest) group ctest ctest conformance & ;;
      runtime) group runtime runtime torch & ;;
      plugins) group plugins plugins detection & ;;
      sanitize) group sanitize sanitize & ;;
      onnxcuda) (export ONNX_UPDATE=1; group onnxcuda onnxcuda; cp tests/onnx_backend/expected_failures_cuda.txt "$R/onnxcuda/") & ;;
      models) group models models & ;;
      *) log "unknown group $g" ;;
    esac
  done
  wait
  log done
  touch "$R/DONE"
}

if [ "${1:-}" = --drive ]; then drive; exit 0; fi
if [ ! -f "$R/started" ]; then
  mkdir -p "$R" && touch "$R/started"
  # Its own session: the device tool's end of call must not take the driver with it.
  RESULTS=$R PLAN=$PLAN setsid nohup bash "$0" --drive > "$R/driver.out" 2>&1 < /dev/null &
fi
end=$((SECONDS + ${POLL:-500}))
while [ $SECONDS -lt $end ] && [ ! -f "$R/DONE" ]; do sleep 10; done
cat "$R/driver.log"
for s in "$R"/*/summary.txt; do [ -f "$s" ] && { echo "== $s"; cat "$s"; }; done
[ -n "${OUT:-}" ] && tar czf "$OUT/gpu-detached.tgz" --exclude="*.onnx" -C "$(dirname "$R")" "$(basename "$R")"
if [ -f "$R/DONE" ]; then echo ALLDONE; fi
