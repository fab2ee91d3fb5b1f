#!/usr/bin/env bash
# Token against impute on the full pipeline (contrastive pretraining -> R_conf -> fine-tuning ->
# evaluate) on a synthetic OL3I cohort whose missingness carries signal (MNAR), over seeds.
# Issue "incomplete cohorts": docs/experiments.md quotes what this prints.
#
#   benchmarks/missing_pipeline.sh [BIN] [OUT]      (BIN: .venv/bin, OUT: missing-out)
#
# Sizes: MP_PATIENTS (1000), MP_SEEDS (0-4), MP_MECHANISM (mnar), MP_RATE (0.3), MP_NO_IMAGE (0.2).
# Both modes share the cohort, the recipe, the epochs and the seeds; only --missing differs.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-missing-out}
export AMFMEDIT_DATA="$OUT/data" AMFMEDIT_RUNS="$OUT/runs"
PATIENTS=${MP_PATIENTS:-1000}
SEEDS=${MP_SEEDS:-0-4}
MECHANISM=${MP_MECHANISM:-mnar}
RATE=${MP_RATE:-0.3}
NO_IMAGE=${MP_NO_IMAGE:-0.2}
NAME=missing-$MECHANISM
start=$(date +%s)
"$BIN/amfmedit" prepare --data synthetic-ol3i --patients "$PATIENTS" --image-size 32 --features 32 \
    --prevalence 0.2 --seed 2022 --missing-rate "$RATE" --missing-mechanism "$MECHANISM" \
    --no-image-rate "$NO_IMAGE" --name "$NAME" --force
rm -rf "$OUT/runs/$NAME"
# token (the default) first, then the same pretraining with imputed values (pretrain-impute/)
"$BIN/amfmedit" pretrain --data "$NAME" --recipe cpu --epochs 20 --run "$NAME" --missing token -q
"$BIN/amfmedit" pretrain --run "$NAME" --config "$OUT/runs/$NAME/pretrain/config.toml" --missing impute -q
for mode in token impute; do
    "$BIN/amfmedit" rconf --run "$NAME" --missing "$mode" -q
    "$BIN/amfmedit" finetune --run "$NAME" --recipe cpu --fusion amf --fusion concat --strategy trainable \
        --epochs 5 --seeds "$SEEDS" --missing "$mode" -q
    "$BIN/amfmedit" finetune --run "$NAME" --recipe cpu --fusion none --modality tabular \
        --epochs 5 --seeds "$SEEDS" --missing "$mode" -q
done
"$BIN/amfmedit" evaluate --run "$NAME"
end=$(date +%s)
echo "pipeline took $((end - start)) s; tables: $OUT/runs/$NAME/evaluate/"
