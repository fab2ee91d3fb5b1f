#!/usr/bin/env bash
# Per-epoch training time of the demo's models at any commit, same options everywhere (options
# that exist since before the CPU speed work), to compare a checkout with an older one:
#
#   bash benchmarks/demo_epochs.sh REPO OUT [PYTHON]
#   git worktree add /tmp/old 2c05544 && bash benchmarks/demo_epochs.sh /tmp/old /tmp/e-old .venv/bin/python
#
# prepare (800 patients, 32 px, 32 features) -> pretrain (ResNet-18 + FT-Mamba, 4 epochs, batch 64)
# -> rconf (1 epoch) -> finetune (AMF, trainable, 4 epochs); prints each epoch's training time
# (metrics.jsonl "time_s") of pretrain and finetune.
set -euo pipefail
REPO=$(cd "$1" && pwd); OUT=$2; PY=${3:-python3}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
export PYTHONPATH=$REPO AMFMEDIT_DATA=$OUT/data AMFMEDIT_RUNS=$OUT/runs
A="$PY -m amfmedit"
cd "$REPO"
$A prepare --data synthetic-ol3i --patients 800 --image-size 32 --features 32 --prevalence 0.2 --seed 2022 \
    --force >/dev/null
$A pretrain --data synthetic-ol3i --run demo --tabular-encoder ft_mamba --image-arch resnet18 --epochs 4 \
    --warmup-epochs 1 --batch-size 64 --lr 1e-3 >/dev/null 2>&1  # 4 epochs: timing only, ITC stays near chance
$A rconf --lr 1e-3 --epochs 1 --batch-size 64 --loss-weights none >/dev/null 2>&1
$A finetune --fusion amf --strategy trainable --seeds 2022 --lr 1e-3 --epochs 4 --batch-size 64 \
    --loss-weights none >/dev/null
for f in "$OUT/runs/demo/pretrain/metrics.jsonl" "$OUT/runs/demo/finetune-amf-trainable-seed2022/metrics.jsonl"; do
  echo "$(basename "$(dirname "$f")") epoch seconds: $(grep -o '"time_s": [0-9.]*' "$f" | cut -d' ' -f2 | tr '\n' ' ')"
done
