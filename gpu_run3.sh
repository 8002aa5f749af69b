#!/usr/bin/env bash
# One-off GPU session driver (not committed): build, tests, measurements, in one call.
export PYTHONUNBUFFERED=1
scripts/gpu-check.sh build ctest > $OUT/gpucheck.txt 2>&1; cat $OUT/summary.txt
export KILN_BUILD_DIR=$PWD/build-gpu KILN_LIB_DIR=$PWD/build-gpu/lib
T=tests/gpu
timeout 240 python3 -m pytest -q -p no:cacheprovider $T/test_cuda_fusion.py $T/test_cuda_attention.py $T/test_cuda_depthwise.py $T/test_cuda_layout.py 2>&1 | tee $OUT/runtime.log | tail -15
timeout 100 python3 benchmarks/bench_generated.py --out $OUT/generated.json 2>&1 | tail -6
[ -f benchmarks/bench_depthwise.py ] && timeout 100 python3 benchmarks/bench_depthwise.py > $OUT/depthwise.txt 2>&1; tail -12 $OUT/depthwise.txt
for layout in default nhwc; do
  if [ $layout = nhwc ]; then export KILN_CONV_LAYOUT=nhwc; fi
  timeout 150 python3 benchmarks/bench_models.py --models convnext_tiny efficientnet_b0 mobilenet_v3 vit_b_16 --batches 32 --peers cuda_graph --iterations 50 --out $OUT/zoo_$layout.json 2>&1 | grep '^{' | python3 -c "import sys,json
for l in sys.stdin:
  r=json.loads(l); print('$layout', r['model'], r.get('kiln'), r.get('eager_cuda_graph'), r.get('error','')[:300])"
done
unset KILN_CONV_LAYOUT
