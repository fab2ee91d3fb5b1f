#!/usr/bin/env bash
# The one prepared GPU check (H100/H200): install the carried wheels, then run the GPU tests,
# the model/scan benchmark, the pretraining-throughput benchmark and a small end-to-end CLI run
# on CUDA. Each step has its own time limit and its own log under $OUT; a failing step does not
# stop the next one. The last lines printed are a summary.
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine (wheels in .whl/, see docs/performance.md, "GPU")
#   SMALL=1 bash benchmarks/gpu_check.sh    # tiny sizes, CPU: checks that the script itself works
#   E2E=1 bash benchmarks/gpu_check.sh      # also the end-to-end CLI run (~2.5 more minutes)
#
# Wheels expected in .whl/: mamba_ssm, causal_conv1d (built for the machine's Python/torch/sm_90),
# and captum, grad_cam, ttach, pydicom. Installed with --no-deps into /tmp/site.
set -u
OUT=${OUT:-/tmp/amfmedit-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
SMALL=${SMALL:-0}
declare -a SUMMARY=()

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) ==="
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  SUMMARY+=("$(printf '%-22s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")")
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ "$SMALL" != 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/pip.log" 2>&1 || { echo "wheel install failed"; tail "$OUT/pip.log"; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"

step info "${T_INFO:-60}" $PY -m amfmedit info
if [ "$SMALL" = 1 ]; then
  step gpu-tests 120 $PY -m pytest -q -rs tests/models/test_models_gpu.py
  step models 240 $PY benchmarks/gpu_models.py --small
  step throughput 240 $PY benchmarks/bench_pretrain_throughput.py --small
  E2E_ARGS="--patients 160 --image-size 64 --features 24"
  DEV=cpu
else
  # Limits fit a ~5-minute device budget; T_* and THROUGHPUT_ARGS shrink them for a smaller one.
  step gpu-tests "${T_TESTS:-60}" $PY -m pytest -q -rs tests/models/test_models_gpu.py
  step models "${T_MODELS:-90}" $PY benchmarks/gpu_models.py
  step throughput "${T_THROUGHPUT:-130}" $PY benchmarks/bench_pretrain_throughput.py \
    ${THROUGHPUT_ARGS:---compile --windows 4 --per-window 5}
  E2E_ARGS="--patients 800 --image-size 128 --features 64"
  DEV=cuda
fi

# A small end-to-end run on the device: prepare, pretrain, rconf, finetune (AMF), evaluate, explain.
e2e() {
  set -e
  export AMFMEDIT_DATA=/tmp/e2e/data AMFMEDIT_RUNS=/tmp/e2e/runs
  rm -rf /tmp/e2e
  $PY -m amfmedit prepare --data synthetic-ol3i $E2E_ARGS --prevalence 0.15 --seed 7
  $PY -m amfmedit pretrain --data synthetic-ol3i --tabular-encoder ft_mamba --epochs 3 --batch-size 64 --device $DEV
  $PY -m amfmedit rconf --epochs 3 --device $DEV
  $PY -m amfmedit finetune --fusion amf --strategy trainable --seeds 2022 --lr 1e-3 --epochs 4 --device $DEV
  $PY -m amfmedit evaluate --device $DEV
  $PY -m amfmedit explain --method gradcam --stage finetune-amf-trainable-seed2022 --cases 2 --device $DEV
  cp /tmp/e2e/runs/*/evaluate/results.md "$OUT/e2e-results.md" 2>/dev/null || true
}
export -f e2e
export PY E2E_ARGS DEV OUT
# The device budget is small (the whole check must fit ~5 minutes): the end-to-end run is opt-in.
if [ "${E2E:-$SMALL}" = 1 ]; then step e2e 150 bash -c e2e; fi

echo
echo "=== summary ($(cat "$OUT/gpu.txt" 2>/dev/null || echo no GPU)) ==="
printf '%s\n' "${SUMMARY[@]}"
grep -h -E "^(variant|ours|reference|model-only|device)|x reference|ratio|fused|chunked|sequential|AMF|cross" "$OUT/models.log" "$OUT/throughput.log" 2>/dev/null | tail -n 30
