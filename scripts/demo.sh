#!/usr/bin/env bash
# `make demo`: the whole pipeline on a CPU-sized synthetic OL3I cohort.
#
# prepare -> pretrain (ResNet-18 + FT-Mamba, ITC) -> rconf -> finetune (concatenation,
# cross-attention and AMF; frozen and trainable) -> evaluate, then the results table beside
# the generator's oracle AUC and the check AMF + FT-Mamba (trainable) >= 0.5 + 0.7 (oracle - 0.5).
# Sizes are plain CLI options (no demo mode in the library); override them with the
# environment variables below, e.g. DEMO_SEED=3 make demo.
set -euo pipefail
BIN=${1:-.venv/bin}
OUT=${2:-demo-out}
export AMFMEDIT_DATA="$OUT/data" AMFMEDIT_RUNS="$OUT/runs"
PATIENTS=${DEMO_PATIENTS:-800}
IMAGE=${DEMO_IMAGE:-32}
FEATURES=${DEMO_FEATURES:-32}
PREVALENCE=${DEMO_PREVALENCE:-0.2}
SEED=${DEMO_SEED:-2022}
"$BIN/amfmedit" info
start=$(date +%s)
"$BIN/amfmedit" prepare --data synthetic-ol3i --patients "$PATIENTS" --image-size "$IMAGE" --features "$FEATURES" \
    --prevalence "$PREVALENCE" --seed "$SEED" --force
rm -rf "$OUT/runs/demo"
# --recipe cpu (stages/recipes.py, docs/recipes.md): ResNet-18 instead of the paper's ResNet-50 keeps two
# CPU cores inside five minutes; the tabular side is the paper's FT-Mamba (D_tab 64); plain
# cross-entropy, since the paper's alpha = (0.1, 2) is OL3I's choice for a ~20:1 imbalance and
# over-corrects at the demo's 20% prevalence. The class-balanced sampler stays: without it AUC
# varies twice as much over seeds (docs/recipes.md), at the price of probabilities that sit high (evaluate's
# temperature scaling and validation-chosen threshold take care of that).
"$BIN/amfmedit" pretrain --data synthetic-ol3i --run demo --tabular-encoder ft_mamba --recipe cpu \
    --epochs "${DEMO_PRETRAIN_EPOCHS:-20}"
"$BIN/amfmedit" rconf --recipe cpu --epochs "${DEMO_RCONF_EPOCHS:-3}"
"$BIN/amfmedit" finetune --fusion concat --fusion cross_attention --fusion amf --strategy frozen --strategy trainable \
    --seeds 2022 --recipe cpu --epochs "${DEMO_FINETUNE_EPOCHS:-5}"
"$BIN/amfmedit" evaluate
end=$(date +%s)

"$BIN/python" - "$OUT/runs/demo/evaluate/metrics.json" "$((end - start))" <<'EOF'
import json, sys

metrics = json.load(open(sys.argv[1]))
oracle = metrics["oracle_auc"]
(amf,) = [g for g in metrics["groups"] if g["fusion"] == "amf" and g["strategy"] == "trainable" and not g.get("mask")]
target = 0.5 + 0.7 * (oracle - 0.5)
verdict = "meets" if amf["mean"] >= target else "MISSES"
auc, thr = amf["intervals"]["auc"], amf["threshold"]


def ci(name):
    iv = amf["intervals"].get(name)
    return f"{iv['estimate']:.3f} (95% CI {iv['low']:.3f}-{iv['high']:.3f})" if iv else "n/a (one class in test)"


print(f"AMF + FT-Mamba (trainable) test AUC {auc['estimate']:.3f} (95% CI {auc['low']:.3f}-{auc['high']:.3f}) "
      f"of the seed-averaged prediction, {amf['mean']:.4f} +- {amf['std']:.4f} over {len(amf['seeds'])} seeds; "
      f"oracle AUC {oracle:.4f}")
print(f"  at the threshold chosen on validation ({thr['name']}: {thr['value']:.3f}): sensitivity {ci('sensitivity')}, "
      f"specificity {ci('specificity')}")
print(f"  target 0.5 + 0.7 x (oracle - 0.5) = {target:.4f} for the mean over seeds: {verdict} the target")
print(f"pipeline (prepare -> pretrain -> rconf -> finetune x6 -> evaluate) took {sys.argv[2]} s")
EOF
